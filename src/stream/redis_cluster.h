/*
 * redis_cluster.h -- private: the slot map and command-key helpers of
 * redis_cluster.c, used by redis.c's routing. Public pieces (the key slot,
 * MOVED/ASK parsing) are in dg/redis.h.
 */
#ifndef DG_STREAM_REDIS_CLUSTER_H
#define DG_STREAM_REDIS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/** A node of the cluster, as reached by clients. */
typedef struct dg__redis_node_s {
  char *host;
  uint16_t port;
  int master; /* 1: serves slots */
} dg__redis_node_t;

/** Slots start..end (inclusive) are served by nodes[node]. */
typedef struct dg__redis_range_s {
  unsigned start, end;
  int node;
} dg__redis_range_t;

/** Which master serves which slots. A zeroed map is empty. */
typedef struct dg__redis_slotmap_s {
  dg__redis_node_t *nodes;
  size_t nnodes;
  dg__redis_range_t *ranges;
  size_t nranges;
} dg__redis_slotmap_t;

/**
 * Index of the argument that is the command's key (the first key for EVAL
 * and XREAD), or -1 for a keyless command.
 */
int dg__redis_command_key(int argc, const char **argv, const size_t *argvlen);

/** Slot of the command's key, or -1 for a keyless command. */
int dg__redis_command_slot(int argc, const char **argv, const size_t *argvlen);

/**
 * Reads a CLUSTER SHARDS answer (tls: take the nodes' TLS ports) into *out;
 * nodes without an address get `asked` (the node that answered). Fails with
 * DG_EIO when no slot has a live master (*out untouched).
 */
int dg__redis_slotmap_from_shards(const redisReply *rep, int tls, const char *asked,
                                  dg__redis_slotmap_t *out);

/** The same for a CLUSTER SLOTS answer. */
int dg__redis_slotmap_from_slots(const redisReply *rep, const char *asked, dg__redis_slotmap_t *out);

/** Index into m->nodes of slot's master, or -1 when unknown. */
int dg__redis_slotmap_lookup(const dg__redis_slotmap_t *m, unsigned slot);

void dg__redis_slotmap_dispose(dg__redis_slotmap_t *m);

#endif
