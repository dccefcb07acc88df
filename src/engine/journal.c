/*
 * journal.c -- applying planned changes, and the savepoint journal that can
 * undo them.
 *
 * The structural operations in engine.c first *plan*: they append the
 * change records they would make to the caller's buffer, reading only the
 * current state and checking every new value, so every failure is found
 * before anything is written. Only then does dg__et_apply() write the
 * planned values (and the operation its structural edits). Value writes
 * (dg_etable_set) write through and journal from their records on success
 * (see engine.c, section 2). With a savepoint open, each write journals
 * what it overwrites:
 *
 *   J_NUM    (slot, col, old value)      undo: write it back
 *   J_TEXT   (slot, col, old text)       undo: put the old text back (the
 *                                        journal owned it meanwhile)
 *   J_HOLD   (slot, col, old state)      undo: hold or release again
 *   J_INSERT (slot)                      undo: unlink, unindex, free the slot
 *   J_DELETE (root slot, old parent)     undo: re-index the kept subtree and
 *                                        link its root back (deleted rows stay
 *                                        intact in their slots until release)
 *   J_MOVE   (slot, old parent)          undo: move back
 *
 * Rolling back replays the entries newest first, so every undo sees exactly
 * the state its entry was written in. Releasing the outermost savepoint
 * frees what the journal kept (old texts, deleted subtrees) and drops it.
 */
#include "engine/internal.h"

void dg__j_push(dg_etable_t *t, uint8_t kind, uint32_t slot, uint32_t aux, int64_t old) {
  if (t->njournal == t->capjournal)
    t->journal = dg__et_grow(t->journal, &t->capjournal, t->njournal + 1, sizeof(jentry_t));
  jentry_t *e = &t->journal[t->njournal++];
  e->kind = kind;
  e->slot = slot;
  e->aux = aux;
  e->old.num = old;
}

void dg__j_push_text(dg_etable_t *t, uint32_t slot, uint32_t col, etext_t *old) {
  dg__j_push(t, J_TEXT, slot, col, 0);
  t->journal[t->njournal - 1].old.text = old;
}

void dg__et_apply(dg_etable_t *t, const dg_changes_t *c, size_t from) {
  bool j = journaling(t);
  for (size_t i = from; i < c->n; i++) {
    const dg_change_t *ch = &c->v[i];
    uint32_t s = ch->_slot;
    switch (ch->kind) {
      case DG_CHANGE_NUMBER: {
        int64_t *v = &NUMS(t, s)[ch->col];
        if (j) dg__j_push(t, J_NUM, s, ch->col, *v);
        *v = ch->new_value;
        break;
      }
      case DG_CHANGE_TEXT: {
        const char *p = NULL;
        size_t len = 0;
        DG_ASSERT(dg_changes_text(c, ch, true, &p, &len) == 0);
        etext_t **cell = &TEXTS(t, s)[ch->col];
        if (j)
          dg__j_push_text(t, s, ch->col, *cell);
        else
          dg_free(*cell);
        *cell = dg__et_text_new(p, len);
        break;
      }
      case DG_CHANGE_HOLD:
        if (j) dg__j_push(t, J_HOLD, s, ch->col, ch->old_value);
        dg__et_hold_set(t, s, ch->col, ch->new_value != 0);
        break;
      default: /* structural records: the operation did the work itself */
        break;
    }
  }
}

/* Frees the rows of a subtree that is no longer linked or indexed. */
void dg__et_free_subtree(dg_etable_t *t, uint32_t root) {
  size_t n = 0;
  t->stack = dg__et_grow(t->stack, &t->capstack, 1, sizeof(uint32_t));
  t->stack[n++] = root;
  while (n > 0) {
    uint32_t s = t->stack[--n];
    const erow_t *r = ROW(t, s);
    const kview_t kv = KVIEW(r);
    t->stack = dg__et_grow(t->stack, &t->capstack, n + kv.n, sizeof(uint32_t));
    for (uint32_t i = 0; i < kv.n; i++) t->stack[n++] = KAT(kv, i);
    dg__et_slot_free(t, s);
  }
}

/* Re-indexes and revives a deleted subtree (rollback of J_DELETE). */
static void revive_subtree(dg_etable_t *t, uint32_t root) {
  size_t n = 0;
  t->stack = dg__et_grow(t->stack, &t->capstack, 1, sizeof(uint32_t));
  t->stack[n++] = root;
  while (n > 0) {
    uint32_t s = t->stack[--n];
    erow_t *r = ROW(t, s);
    DG_ASSERT(!(r->flags & ROW_LIVE));
    r->flags |= ROW_LIVE;
    dg__et_index_put(t, s);
    t->nlive++;
    /* (index_put does not move the rows, so r stays valid) */
    const kview_t kv = KVIEW(r);
    t->stack = dg__et_grow(t->stack, &t->capstack, n + kv.n, sizeof(uint32_t));
    for (uint32_t i = 0; i < kv.n; i++) t->stack[n++] = KAT(kv, i);
  }
}

static void undo(dg_etable_t *t, jentry_t *e) {
  uint32_t s = e->slot;
  switch (e->kind) {
    case J_NUM:
      NUMS(t, s)[e->aux] = e->old.num;
      break;
    case J_TEXT: {
      etext_t **cell = &TEXTS(t, s)[e->aux];
      dg_free(*cell);
      *cell = e->old.text;
      e->old.text = NULL;
      break;
    }
    case J_HOLD:
      dg__et_hold_set(t, s, e->aux, e->old.num != 0);
      break;
    case J_INSERT: {
      erow_t *r = ROW(t, s);
      DG_ASSERT(!HAS_KIDS(r) && r->holds_below == 0);
      dg__et_kid_unlink(t, r->parent, s);
      dg__et_index_del(t, r->id);
      t->nlive--;
      dg__et_slot_free(t, s);
      break;
    }
    case J_DELETE:
      DG_ASSERT(ROW(t, s)->holds_below == 0);
      revive_subtree(t, s);
      dg__et_kid_link(t, e->aux, s);
      break;
    case J_MOVE: {
      uint32_t cur = ROW(t, s)->parent;
      int64_t hb = ROW(t, s)->holds_below;
      dg__et_holds_below_add(t, cur, -hb);
      dg__et_kid_unlink(t, cur, s);
      dg__et_kid_link(t, e->aux, s);
      dg__et_holds_below_add(t, e->aux, hb);
      break;
    }
    default:
      DG_ASSERT(!"bad journal entry");
  }
}

dg_emark_t dg_etable_savepoint(dg_etable_t *t) {
  if (t->loading) return 0;
  if (t->nmarks == t->capmarks) {
    size_t cap = t->capmarks;
    t->marks = dg__et_grow(t->marks, &cap, (size_t)t->nmarks + 1, sizeof(size_t));
    t->capmarks = (uint32_t)cap;
  }
  t->marks[t->nmarks++] = t->njournal;
  return t->nmarks;
}

int dg_etable_rollback(dg_etable_t *t, dg_emark_t m) {
  if (m == 0 || m > t->nmarks) return DG_EINVAL;
  size_t to = t->marks[m - 1];
  while (t->njournal > to) undo(t, &t->journal[--t->njournal]);
  t->nmarks = m - 1;
  dg__et_after_op(t);
  return 0;
}

int dg_etable_release(dg_etable_t *t, dg_emark_t m) {
  if (m == 0 || m > t->nmarks) return DG_EINVAL;
  t->nmarks = m - 1;
  if (t->nmarks > 0) return 0; /* an enclosing savepoint may still undo it */
  for (size_t i = 0; i < t->njournal; i++) {
    jentry_t *e = &t->journal[i];
    if (e->kind == J_TEXT) dg_free(e->old.text);
    if (e->kind == J_DELETE) dg__et_free_subtree(t, e->slot);
  }
  t->njournal = 0;
  return 0;
}
