// The official Ably SDK (npm `ably`, see package.json) against Tern, for
// tests/realtime.rs. Each scenario prints one JSON object per line
// (`{"event": ...}`) for the Rust test to assert on, and exits 0; any
// failure prints `{"event":"error",...}` and exits 1. Every wait is
// bounded.
//
//   node ably_scenarios.mjs SCENARIO PORT FORMAT [ARGS...]
//
// FORMAT is `json` or `msgpack` (useBinaryProtocol). Scenarios:
//   pubsub KEY                 two clients: subscribe, publish string / JSON
//                              object / binary / headers, ping, detach, close
//   presence KEY               enter, get (SYNC), update, leave
//   denied TOKEN               attach to a channel outside the capability
//   badkey KEY                 connect with a wrong key
//   subscribe KEY CHANNEL N    print N messages received on CHANNEL
//   publish KEY CHANNEL        publish a fixed set of messages on CHANNEL
//   rewind KEY CHANNEL N [R]   attach to CHANNEL (with params {rewind: R}
//                              when R is given), print the attach flags
//                              and N messages
//   history KEY CHANNEL        Ably.Rest publishes 5 messages (one binary,
//                              one JSON), then Realtime and Rest read the
//                              channel's history two at a time, following
//                              `next()`; prints every page; REST presence
//                              and time()
//   resume KEY CHANNEL B N     subscribe, take B messages, then (the test
//                              drops the transport) wait to reconnect and
//                              re-attach, print the connection id and
//                              RESUMED, then N messages in all
import * as Ably from 'ably';

const [scenario, port, format, ...args] = process.argv.slice(2);
const WAIT_MS = 10_000;

function out(event, fields = {}) {
  console.log(JSON.stringify({ event, ...fields }));
}

function within(promise, what, ms = WAIT_MS) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ]);
}

function client(extra) {
  return new Ably.Realtime({
    endpoint: '127.0.0.1',
    port: Number(port),
    tls: false,
    useBinaryProtocol: format === 'msgpack',
    logLevel: 0,
    ...extra,
  });
}

// A message as JSON-safe fields; bytes as {base64}.
function describe(m) {
  const data = Buffer.isBuffer(m.data) || m.data instanceof Uint8Array
    ? { base64: Buffer.from(m.data).toString('base64') }
    : m.data;
  return {
    name: m.name ?? null,
    data,
    encoding: m.encoding ?? null,
    clientId: m.clientId ?? null,
    connectionId: m.connectionId ?? null,
    id: m.id ?? null,
    serial: m.serial ?? null,
    timestamp: m.timestamp ?? null,
    extras: m.extras ?? null,
  };
}

async function connected(c) {
  if (c.connection.state !== 'connected') {
    await within(c.connection.once('connected'), 'connected');
  }
}

async function closeAll(...clients) {
  for (const c of clients) {
    c.close();
  }
  for (const c of clients) {
    if (c.connection.state !== 'closed') {
      await within(c.connection.once('closed'), 'closed');
    }
  }
}

// Publishes the fixed set used by `pubsub` and `publish`; returns results.
async function publishSet(channel) {
  const results = [];
  results.push(await within(channel.publish('greet', 'hello, wörld'), 'publish text'));
  results.push(await within(channel.publish('obj', { a: 1, list: [true, null, 'x'] }), 'publish object'));
  results.push(await within(channel.publish('bin', Buffer.from([0, 1, 2, 253, 254, 255])), 'publish binary'));
  results.push(await within(
    channel.publish({ name: 'hdr', data: 'with headers', extras: { headers: { k1: 'v1', k2: 'v2' } } }),
    'publish headers',
  ));
  return results;
}

// Waits until `got` holds `n` items; `wake` is set to the waker.
function until(got, n, setWake, what, ms = WAIT_MS) {
  return within((async () => {
    while (got.length < n) await new Promise((r) => { setWake(r); });
  })(), what, ms);
}

const scenarios = {
  async pubsub(key) {
    const a = client({ key, clientId: 'alice' });
    const b = client({ key, clientId: 'bob' });
    await connected(a);
    await connected(b);
    out('connected', { id: a.connection.id, clientId: a.auth.clientId });
    const ch = a.channels.get('room:pubsub');
    const got = [];
    let wake;
    await within(ch.subscribe((m) => { got.push(m); if (wake) wake(); }), 'subscribe');
    out('attached', { modes: ch.modes, state: ch.state });
    // b publishes without attaching (RTL6c1).
    const results = await publishSet(b.channels.get('room:pubsub'));
    out('published', { results });
    await within((async () => {
      while (got.length < 4) await new Promise((r) => { wake = r; });
    })(), 'four messages');
    for (const m of got) out('message', describe(m));
    out('ping', { ok: typeof (await within(a.connection.ping(), 'ping')) === 'number' });
    await within(ch.detach(), 'detach');
    out('detached', { state: ch.state });
    await closeAll(a, b);
    out('closed');
  },

  async presence(key) {
    const a = client({ key, clientId: 'alice' });
    const b = client({ key, clientId: 'bob' });
    const ca = a.channels.get('room:presence');
    const cb = b.channels.get('room:presence');
    await within(ca.presence.enter({ mood: 'happy' }), 'alice enters');
    // b attaches after alice entered: HAS_PRESENCE and a SYNC.
    const members = await within(cb.presence.get(), 'get');
    out('members', { members: members.map((m) => ({ clientId: m.clientId, data: m.data, action: m.action })) });
    const seen = [];
    let wake;
    await within(cb.presence.subscribe((m) => { seen.push(m); if (wake) wake(); }), 'presence subscribe');
    await within(ca.presence.update('busy'), 'update');
    await within(cb.presence.enter(Buffer.from([1, 2, 3])), 'bob enters');
    await within(ca.presence.leave(), 'leave');
    await within((async () => {
      while (!seen.some((m) => m.action === 'leave')) await new Promise((r) => { wake = r; });
    })(), 'leave event');
    out('events', { events: seen.map((m) => ({ action: m.action, clientId: m.clientId, data: Buffer.isBuffer(m.data) ? { base64: m.data.toString('base64') } : m.data })) });
    const after = await within(cb.presence.get(), 'get after leave');
    out('after', { members: after.map((m) => m.clientId).sort() });
    await closeAll(a, b);
    out('closed');
  },

  async denied(token) {
    const c = client({ token });
    await connected(c);
    out('connected', { clientId: c.auth.clientId ?? null });
    const ok = c.channels.get('chat:1');
    await within(ok.attach(), 'attach allowed');
    out('attached', { channel: 'chat:1', modes: ok.modes });
    const no = c.channels.get('secret');
    try {
      await within(no.attach(), 'attach denied');
      out('attached', { channel: 'secret' });
    } catch (e) {
      out('attach_failed', { code: e.code, statusCode: e.statusCode, state: no.state });
    }
    try {
      await within(c.channels.get('other').publish('x', 'y'), 'publish denied');
      out('published', { channel: 'other' });
    } catch (e) {
      out('publish_failed', { code: e.code, statusCode: e.statusCode });
    }
    // The connection is unaffected.
    out('connection', { state: c.connection.state });
    await closeAll(c);
  },

  async badkey(key) {
    const c = client({ key });
    const change = await within(
      new Promise((r) => c.connection.on((s) => { if (s.current === 'failed' || s.current === 'connected') r(s); })),
      'failed',
    );
    out('state', { state: change.current, code: change.reason?.code ?? null, statusCode: change.reason?.statusCode ?? null });
    c.close();
  },

  async subscribe(key, channelName, count) {
    const c = client({ key, clientId: 'sub' });
    const ch = c.channels.get(channelName);
    const got = [];
    let wake;
    await within(ch.subscribe((m) => { got.push(m); if (wake) wake(); }), 'subscribe');
    out('ready');
    await within((async () => {
      while (got.length < Number(count)) await new Promise((r) => { wake = r; });
    })(), `${count} messages`, 20_000);
    for (const m of got) out('message', describe(m));
    await closeAll(c);
  },

  async rewind(key, channelName, count, rewindParam) {
    const c = client({ key, clientId: 'rewinder' });
    const opts = rewindParam ? { params: { rewind: rewindParam } } : {};
    const ch = c.channels.get(channelName, opts);
    const got = [];
    let wake;
    const change = await within(ch.subscribe((m) => { got.push(m); if (wake) wake(); }), 'subscribe');
    out('ready', { hasBacklog: change?.hasBacklog ?? null, resumed: change?.resumed ?? null, params: ch.params ?? null });
    await until(got, Number(count), (w) => { wake = w; }, `${count} messages`, 20_000);
    for (const m of got) out('message', describe(m));
    await closeAll(c);
  },

  async resume(key, channelName, before, total) {
    const c = client({ key, clientId: 'resumer', disableConnectivityCheck: true });
    const ch = c.channels.get(channelName);
    const got = [];
    let wake;
    const attaches = [];
    ch.on('attached', (change) => { attaches.push(change); if (wake) wake(); });
    await within(ch.subscribe((m) => { got.push(m); if (wake) wake(); }), 'subscribe');
    await connected(c);
    const firstId = c.connection.id;
    out('ready', { id: firstId });
    await until(got, Number(before), (w) => { wake = w; }, `${before} messages`);
    const states = [];
    c.connection.on((s) => states.push(s.current));
    out('before', { count: got.length });
    await within(c.connection.once('disconnected'), 'the transport drops', 20_000);
    await within(c.connection.once('connected'), 'reconnected', 20_000);
    // The channel re-attaches on the new transport.
    await until(attaches, 2, (w) => { wake = w; }, 're-attached', 20_000);
    out('reattached', { id: c.connection.id, firstId, resumed: attaches[1].resumed, errorCode: c.connection.errorReason?.code ?? null, states });
    await until(got, Number(total), (w) => { wake = w; }, `${total} messages`, 20_000);
    for (const m of got) out('message', describe(m));
    await closeAll(c);
  },

  async history(key, channelName) {
    const rest = new Ably.Rest({
      key,
      endpoint: '127.0.0.1',
      port: Number(port),
      tls: false,
      useBinaryProtocol: format === 'msgpack',
      logLevel: 0,
    });
    const rch = rest.channels.get(channelName);
    const published = [];
    for (const [name, data] of [
      ['t', 'one'],
      ['t', 'two'],
      ['b', Buffer.from([1, 2, 3])],
      ['j', { n: 4 }],
      ['t', 'five'],
    ]) {
      const r = await within(rch.publish(name, data), 'REST publish');
      published.push(r?.serials ?? null);
    }
    out('published', { serials: published });
    // Every page, newest first, two at a time, from a realtime client and
    // from the REST client.
    const pages = async (label, ch) => {
      let page = await within(ch.history({ limit: 2 }), `${label} history`);
      const all = [];
      for (;;) {
        all.push(page.items.map(describe));
        if (!page.hasNext()) break;
        page = await within(page.next(), `${label} next page`);
      }
      out('pages', { from: label, pages: all });
    };
    const rt = client({ key, clientId: 'reader' });
    await pages('realtime', rt.channels.get(channelName));
    await pages('rest', rch);
    const fwd = await within(rch.history({ direction: 'forwards', limit: 10 }), 'forwards');
    out('forwards', { items: fwd.items.map(describe) });
    const members = await within(rch.presence.get(), 'REST presence.get');
    out('presence', { count: members.items.length });
    const t = await within(rest.time(), 'time');
    out('time', { ms: t });
    await closeAll(rt);
  },

  async publish(key, channelName) {
    const c = client({ key, clientId: 'pub' });
    const results = await publishSet(c.channels.get(channelName));
    out('published', { results });
    await closeAll(c);
  },
};

try {
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  await run(...args);
  process.exit(0);
} catch (e) {
  out('error', { message: String(e?.message ?? e), code: e?.code ?? null });
  process.exit(1);
}
