// sse.test.mjs -- the web grid's SSE parser (web/src/sse.js) on its own:
// the stream as duckgrid writes it, cut at every byte, with CRLF, comments
// (heartbeats), multi-line data and the `gone` event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from '../../web/src/sse.js';

const STREAM = ': hello\n\nid: 1-0\nevent: update\ndata: {"a":1}\n\n' +
  'id: 2-0\r\nevent: update\r\ndata: {"b":\r\ndata: 2}\r\n\r\n' +
  ':heartbeat\n\nretry: 2000\n\nevent: gone\ndata: {"status":410}\n\n';
const WANT = [
  { id: '1-0', event: 'update', data: '{"a":1}' },
  { id: '2-0', event: 'update', data: '{"b":\n2}' },
  { id: null, event: 'gone', data: '{"status":410}' },
];

test('whole stream', () => {
  const got = [];
  new SseParser((e) => got.push(e)).push(STREAM);
  assert.deepEqual(got, WANT);
});

test('the stream cut at every position gives the same events', () => {
  for (let cut = 1; cut < STREAM.length; cut++) {
    const got = [];
    const p = new SseParser((e) => got.push(e));
    p.push(STREAM.slice(0, cut));
    p.push(STREAM.slice(cut));
    // A CR at the end of the first piece followed by LF is one line end.
    assert.deepEqual(got.filter((e) => e.data !== ''), WANT, `cut at ${cut}`);
  }
});

test('an event without data is not dispatched; a field without a colon is a name', () => {
  const got = [];
  new SseParser((e) => got.push(e)).push('id: 9\n\ndata\n\n');
  assert.deepEqual(got, [{ id: null, event: 'message', data: '' }]);
});
