// tern.js — a small browser client for Tern channels, served by Tern at
// /lib/tern.js. It subscribes with Server-Sent Events (/sse) and publishes
// and reads history over the REST API, so it needs nothing but a browser.
// For the full realtime protocol (presence, per-message ACKs) use the
// official `ably` SDK pointed at Tern instead.
//
//   const tern = new Tern({ token });            // same origin by default
//   const sub = tern.subscribe(['room:1'], m => console.log(m.name, m.data),
//                              { rewind: 10 });
//   await tern.publish('room:1', { hello: 'world' }, { name: 'greet' });
//   const page = await tern.history('room:1', { limit: 20 });
//   sub.close();
//
// Messages arrive decoded: `data` is a string, an object (JSON) or a
// Uint8Array (bytes); `name`, `id`, `serial`, `timestamp`, `clientId` and
// `extras` as the server sent them, plus `channel`.
(function (global) {
  'use strict';

  function decode(m) {
    const enc = m.encoding ? m.encoding.split('/') : [];
    let data = m.data;
    while (enc.length) {
      const t = enc[enc.length - 1];
      if (t === 'base64' && typeof data === 'string') {
        const bin = atob(data);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        data = bytes;
      } else if (t === 'json' && typeof data === 'string') {
        data = JSON.parse(data);
      } else if (t === 'utf-8' && data instanceof Uint8Array) {
        data = new TextDecoder().decode(data);
      } else {
        break; // an encoding the application undoes itself (e.g. cipher)
      }
      enc.pop();
    }
    const out = Object.assign({}, m, { data: data });
    if (enc.length) out.encoding = enc.join('/'); else delete out.encoding;
    return out;
  }

  class Tern {
    constructor(opts) {
      opts = opts || {};
      this.url = (opts.url || global.location.origin).replace(/\/$/, '');
      this.token = opts.token || null;
    }

    _headers(extra) {
      const h = Object.assign({ accept: 'application/json' }, extra || {});
      if (this.token) h.authorization = 'Bearer ' + this.token;
      return h;
    }

    async _check(res) {
      if (res.ok) return res.status === 204 ? null : res.json();
      let err;
      try { err = (await res.json()).error; } catch (_) { err = null; }
      const e = new Error(err ? err.message : 'HTTP ' + res.status);
      e.code = err ? err.code : res.status;
      e.statusCode = res.status;
      throw e;
    }

    // Subscribes to `channels` (a name or an array); `onMessage(message)`
    // for each. Options: `rewind` (last N messages first, from history),
    // `onOpen()`, `onError(event)`. Returns { close() }. The browser
    // reconnects by itself and resumes from the last message it received.
    subscribe(channels, onMessage, opts) {
      opts = opts || {};
      const list = Array.isArray(channels) ? channels : [channels];
      const q = new URLSearchParams({ channels: list.join(',') });
      if (opts.rewind) q.set('rewind', String(opts.rewind));
      if (this.token) q.set('accessToken', this.token);
      const es = new EventSource(this.url + '/sse?' + q.toString());
      es.onmessage = (ev) => {
        let m;
        try { m = JSON.parse(ev.data); } catch (_) { return; }
        onMessage(decode(m));
      };
      if (opts.onOpen) es.onopen = () => opts.onOpen();
      if (opts.onError) es.onerror = (e) => opts.onError(e);
      return { close: () => es.close() };
    }

    // Publishes one message; `data` is a string, a JSON value or a
    // Uint8Array. Options: `name`, `id` (a repeat within the server's
    // window is published once), `headers` (extras.headers).
    async publish(channel, data, opts) {
      opts = opts || {};
      const m = {};
      if (opts.name) m.name = opts.name;
      if (opts.id) m.id = opts.id;
      if (opts.headers) m.extras = { headers: opts.headers };
      if (data instanceof Uint8Array) {
        let bin = '';
        for (let i = 0; i < data.length; i++) bin += String.fromCharCode(data[i]);
        m.data = btoa(bin);
        m.encoding = 'base64';
      } else if (typeof data === 'string') {
        m.data = data;
      } else {
        m.data = JSON.stringify(data);
        m.encoding = 'json';
      }
      const res = await fetch(this.url + '/channels/' + encodeURIComponent(channel) + '/messages', {
        method: 'POST',
        headers: this._headers({ 'content-type': 'application/json' }),
        body: JSON.stringify(m),
      });
      return this._check(res);
    }

    // One page of history: { items, next() } (next() is null on the last
    // page). Options: `limit`, `direction` ('backwards' or 'forwards'),
    // `start`, `end` (ms).
    async history(channel, opts) {
      const q = new URLSearchParams();
      for (const k of ['limit', 'direction', 'start', 'end']) {
        if (opts && opts[k] !== undefined) q.set(k, String(opts[k]));
      }
      return this._page('/channels/' + encodeURIComponent(channel) + '/messages', q.toString());
    }

    async _page(path, query) {
      const res = await fetch(this.url + path + (query ? '?' + query : ''), { headers: this._headers() });
      const items = (await this._check(res)).map(decode);
      const link = res.headers.get('link') || '';
      const m = /<\.\/[^?>]*\?([^>]*)>;\s*rel="next"/.exec(link);
      return { items: items, next: m ? () => this._page(path, m[1]) : null };
    }
  }

  Tern.decode = decode;
  global.Tern = Tern;
})(typeof window !== 'undefined' ? window : globalThis);
