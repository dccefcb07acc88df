/*
 * demo.c -- the demo data of `make run` (DUCKGRID_DEMO=1).
 *
 * The data goes in the way every write does: three requests on
 * request_duck, applied by the manager, each with an outcome on
 * response_duck. Brand X has three product families; Frozen's products are
 * all zero, so writing Frozen shows the equal spread (seed test 4).
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "dg/app.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/entry_mac.h"
#include "dg/log.h"
#include "dg/redis_pool.h"
#include "dg/wire.h"

typedef struct {
  int id, parent;
  const char *name, *family, *sales;
  const char *units;
} demo_row_t;

static const demo_row_t rows[] = {
    {1, 0, "Brand X", NULL, "0", "0"},
    {10, 1, "Snacks", "Snacks", "0", "0"},
    {20, 1, "Beverages", "Beverages", "0", "0"},
    {30, 1, "Frozen", "Frozen", "0", "0"},
    {101, 10, "Crisps", "Snacks", "120.50", "24"},
    {102, 10, "Pretzels", "Snacks", "80.25", "15"},
    {103, 10, "Popcorn", "Snacks", "60.00", "12"},
    {104, 10, "Nuts", "Snacks", "150.75", "20"},
    {105, 10, "Crackers", "Snacks", "45.10", "9"},
    {106, 10, "Trail Mix", "Snacks", "33.40", "6"},
    {107, 10, "Rice Cakes", "Snacks", "20.00", "5"},
    {201, 20, "Cola", "Beverages", "300.00", "100"},
    {202, 20, "Lemonade", "Beverages", "150.50", "45"},
    {203, 20, "Iced Tea", "Beverages", "90.25", "30"},
    {204, 20, "Water", "Beverages", "60.00", "60"},
    {205, 20, "Juice", "Beverages", "110.10", "25"},
    {206, 20, "Energy Drink", "Beverages", "75.95", "15"},
    {207, 20, "Coffee", "Beverages", "130.00", "26"},
    {301, 30, "Pizza", "Frozen", "0.00", "0"},
    {302, 30, "Ice Cream", "Frozen", "0.00", "0"},
    {303, 30, "Peas", "Frozen", "0.00", "0"},
    {304, 30, "Waffles", "Frozen", "0.00", "0"},
    {305, 30, "Dumplings", "Frozen", "0.00", "0"},
    {306, 30, "Sorbet", "Frozen", "0.00", "0"},
};

static const char *const view_sql =
    "SELECT product_family, sum(sales) AS total_sales, sum(units) AS total_units "
    "FROM sales s WHERE NOT EXISTS (SELECT 1 FROM sales c WHERE c.parent_id = s.id) "
    "GROUP BY product_family ORDER BY product_family";

void dg_demo_enqueue(dg_app_t *app) {
  size_t n;
  char **names = dg_catalog_table_names(app->catalog, &n);
  dg_catalog_names_free(names, n);
  if (n > 0) return;

  /* Requests in the wire format's envelope (wire.h), as the API writes
   * them, from the user "demo" (no key: no caller, no tag). */
  json_t *reqs[3];
  reqs[0] = dg_wire_req_new(&(dg_wire_req_t){.op = DG_OP_CREATE_TABLE, .user = "demo", .table = "sales"});
  json_object_set_new(reqs[0], "columns",
                      json_pack("[{s:s,s:s,s:i},{s:s,s:s,s:i},{s:s,s:s,s:i},{s:s,s:s,s:i}]", "name", "name",
                                "type", "text", "scale", 0, "name", "product_family", "type", "text", "scale", 0,
                                "name", "sales", "type", "number", "scale", 2, "name", "units", "type", "number",
                                "scale", 0));
  dg_wire_req_finish(reqs[0], "demo-create-sales");
  json_t *list = json_array();
  for (size_t i = 0; i < DG_ARRAY_SIZE(rows); i++) {
    /* Parents' values are the sums of their children: insert them as 0. */
    json_t *cells = json_pack("{s:s,s:s,s:s}", "name", rows[i].name, "sales", rows[i].sales, "units",
                              rows[i].units);
    json_object_set_new(cells, "product_family",
                        rows[i].family ? json_string(rows[i].family) : json_null());
    json_t *r = json_pack("{s:i,s:o}", "id", rows[i].id, "cells", cells);
    if (rows[i].parent) json_object_set_new(r, "parent_id", json_integer(rows[i].parent));
    json_array_append_new(list, r);
  }
  reqs[1] = dg_wire_req_new(&(dg_wire_req_t){.op = DG_OP_INSERT_ROWS, .user = "demo", .table = "sales"});
  json_object_set_new(reqs[1], "rows", list);
  dg_wire_req_finish(reqs[1], "demo-rows");
  reqs[2] = dg_wire_req_new(&(dg_wire_req_t){.op = DG_OP_CREATE_VIEW, .user = "demo"});
  json_object_set_new(reqs[2], "view", json_string("sales_summary_by_product_family"));
  json_object_set_new(reqs[2], "sql", json_string(view_sql));
  dg_wire_req_finish(reqs[2], "demo-view");

  dg_redis_t *c = dg_redis_pool_get(app->redis);
  int queued = 0;
  for (int i = 0; i < 3; i++) {
    char *text = json_dumps(reqs[i], JSON_COMPACT);
    char t[24], mac[DG_ENTRY_MAC_HEX + 1];
    dg_entry_sign_req(app, text, strlen(text), t, mac);
    const char *argv[] = {"XADD", app->streams.req, "*", "req", text, "t", t, "mac", mac};
    redisReply *rep;
    if (dg_redis_command(c, 9, argv, NULL, &rep) == 0) {
      queued += rep->type == REDIS_REPLY_STRING;
      freeReplyObject(rep);
    }
    free(text);
    json_decref(reqs[i]);
  }
  dg_redis_pool_put(app->redis, c);
  if (queued == 3) dg_log_info("demo data queued: table sales and view sales_summary_by_product_family");
  else dg_log_warn("demo data not queued: Redis is unreachable");
}
