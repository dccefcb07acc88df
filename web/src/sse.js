// sse.js -- a Server-Sent Events client over fetch(). EventSource cannot send
// an Authorization header, and the key must never go into a URL, so the
// stream is read with fetch() and parsed here. It resumes after a drop from
// the last event id (Last-Event-ID), so nothing is missed or seen twice.

import { authHeaders } from './api.js';

// Parses an SSE byte stream into events {id, event, data}; calls onEvent.
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.reset();
  }
  reset() { this.id = null; this.event = ''; this.data = []; }
  push(text) {
    this.buf += text;
    let nl;
    while ((nl = this.buf.search(/\r\n|\n|\r/)) >= 0) {
      // A CR that ends the chunk may be the first half of a CRLF: wait.
      if (nl === this.buf.length - 1 && this.buf[nl] === '\r') break;
      const line = this.buf.slice(0, nl);
      const skip = this.buf.startsWith('\r\n', nl) ? 2 : 1;
      this.buf = this.buf.slice(nl + skip);
      this.line(line);
    }
  }
  line(line) {
    if (line === '') {
      if (this.data.length || this.event) {
        this.onEvent({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
      }
      this.reset();
      return;
    }
    if (line[0] === ':') return; // a comment (heartbeat)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id') this.id = value;
  }
}

// A subscription to GET /events. handlers: update(obj, id), gone(), state(s)
// where s is 'connecting' | 'live' | 'reconnecting' | 'closed'.
export class LiveStream {
  constructor({ table, since, handlers }) {
    this.table = table;
    this.lastId = since || null;
    this.h = handlers;
    this.closed = false;
    this.ctrl = null;
    this.retryMs = 500;
    this.run();
  }

  close() {
    this.closed = true;
    if (this.ctrl) this.ctrl.abort();
    this.h.state('closed');
  }

  // Drops the connection now (as a network drop would); it resumes by itself.
  interrupt() { if (this.ctrl) this.ctrl.abort(); }

  async run() {
    let first = true;
    while (!this.closed) {
      this.h.state(first ? 'connecting' : 'reconnecting');
      first = false;
      const ctrl = new AbortController();
      this.ctrl = ctrl;
      let ended = 'drop';
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (this.lastId) headers['Last-Event-ID'] = this.lastId;
        const q = this.table ? '?table=' + encodeURIComponent(this.table) : '';
        const res = await fetch('/events' + q, { headers, signal: ctrl.signal, cache: 'no-store' });
        if (res.status === 410) { ended = 'gone'; }
        else if (!res.ok || !res.body) { throw new Error('HTTP ' + res.status); }
        else {
          this.h.state('live');
          this.retryMs = 500;
          const reader = res.body.getReader();
          const dec = new TextDecoder();
          const parser = new SseParser((ev) => {
            if (ev.event === 'update') {
              if (ev.id) this.lastId = ev.id;
              let obj = null;
              try { obj = JSON.parse(ev.data); } catch (e) { return; }
              this.h.update(obj, ev.id);
            } else if (ev.event === 'gone') {
              ended = 'gone';
            } else if (ev.event === 'dropped' || ev.event === 'shutdown') {
              ended = 'drop';
            }
          });
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            parser.push(dec.decode(value, { stream: true }));
            if (ended === 'gone') { ctrl.abort(); break; }
          }
        }
      } catch (e) {
        ended = 'drop';
      }
      if (this.closed) return;
      if (ended === 'gone') {
        this.lastId = null;
        this.h.gone();
        return;
      }
      this.h.state('reconnecting');
      await new Promise((r) => setTimeout(r, this.retryMs));
      this.retryMs = Math.min(this.retryMs * 2, 5000);
    }
  }
}
