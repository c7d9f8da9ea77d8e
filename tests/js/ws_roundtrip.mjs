// MQTT.js (npm `mqtt` 5.x) against Tern's MQTT over WebSocket, run by
// tests/transports.rs and tests/token_http.rs.
//
//   node ws_roundtrip.mjs --url ws://127.0.0.1:PORT/mqtt --version 4|5
//                         [--ca CA.pem] [--username TOKEN] [--case CASE] ...
//
// Cases:
//   roundtrip (default)  a subscriber and a publisher on --url exchange a QoS 0
//                        message, a QoS 1 message and a 200 KB QoS 1 message
//                        (so MQTT packets span WebSocket frames), each checked
//                        byte for byte; then 20 QoS 1 messages back to back.
//                        Topics start with --prefix (default tern/mqttjs).
//   bridge               subscribe to --sub-topic, print `subscribed`, wait
//                        for --expect there, publish --reply to --pub-topic
//                        (QoS 1, waiting for PUBACK), print `ok`. The Rust
//                        side is the MQTT-over-TCP client at the other end.
//   refused              connecting is refused with CONNACK code --expect-rc
//                        (3.1.1 return code or v5 reason code).
//
// Prints `ok: ...` and exits 0, or `FAIL: reason` and exits 1. Every wait is
// bounded; a watchdog ends the process after WATCHDOG_MS.

import { randomBytes, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';

const WAIT_MS = 10_000;
const WATCHDOG_MS = 45_000;
const BIG = 200 * 1024;

const watchdog = setTimeout(() => {
  console.log(`FAIL: watchdog: the case did not finish within ${WATCHDOG_MS} ms`);
  process.exit(3);
}, WATCHDOG_MS);

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    version: { type: 'string', default: '4' },
    ca: { type: 'string' },
    username: { type: 'string' },
    case: { type: 'string', default: 'roundtrip' },
    'sub-topic': { type: 'string' },
    'pub-topic': { type: 'string' },
    expect: { type: 'string' },
    reply: { type: 'string' },
    'expect-rc': { type: 'string' },
    prefix: { type: 'string', default: 'tern/mqttjs' },
  },
});

class Fail extends Error {}

function fail(msg) {
  throw new Fail(msg);
}

const version = Number(args.version);
if (version !== 4 && version !== 5) fail(`--version must be 4 or 5, not ${args.version}`);
if (!args.url) fail('--url is required');

function sha(buf) {
  return createHash('sha256').update(buf).digest('hex').slice(0, 16);
}

function options(name) {
  const o = {
    protocolVersion: version,
    clientId: `${name}-${randomBytes(5).toString('hex')}`,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 0,
    connectTimeout: WAIT_MS,
  };
  if (args.ca) {
    o.ca = readFileSync(args.ca);
    o.rejectUnauthorized = true;
  }
  if (args.username !== undefined) o.username = args.username;
  return o;
}

function withTimeout(promise, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Fail(`${what}: no answer within ${WAIT_MS} ms`)), WAIT_MS);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** A connected client whose messages go to a queue. */
async function connect(name) {
  const client = await withTimeout(mqtt.connectAsync(args.url, options(name)), `${name}: CONNECT`);
  const queue = [];
  let waiter = null;
  client.on('message', (topic, payload, packet) => {
    queue.push({ topic, payload, qos: packet.qos });
    if (waiter) {
      const w = waiter;
      waiter = null;
      w();
    }
  });
  client.on('error', (e) => console.error(`${name}: error: ${e.message}`));
  client.nextMessage = async () => {
    const deadline = Date.now() + WAIT_MS;
    while (queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) fail(`${name}: no message within ${WAIT_MS} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return queue.shift();
  };
  return client;
}

async function subscribe(client, filter) {
  const granted = await withTimeout(client.subscribeAsync(filter, { qos: 1 }), `SUBSCRIBE ${filter}`);
  const qos = granted.map((g) => g.qos);
  if (qos.length !== 1 || qos[0] !== 1) fail(`SUBACK for ${filter}: ${JSON.stringify(granted)}`);
}

async function expectMessage(client, topic, payload, qos) {
  const m = await client.nextMessage();
  if (m.topic !== topic) fail(`got a message on ${m.topic}, expected ${topic}`);
  if (!Buffer.from(m.payload).equals(payload)) {
    fail(
      `payload on ${topic} differs: got ${m.payload.length} bytes (${sha(m.payload)}), ` +
        `expected ${payload.length} bytes (${sha(payload)})`,
    );
  }
  if (m.qos !== qos) fail(`message on ${topic} has QoS ${m.qos}, expected ${qos}`);
}

async function roundtrip() {
  const sub = await connect('sub');
  const pub = await connect('pub');
  const base = `${args.prefix}/${randomBytes(4).toString('hex')}`;
  await subscribe(sub, `${base}/#`);
  const cases = [
    [`${base}/small0`, Buffer.from(`hello over ${args.url}`), 0],
    [`${base}/small1`, Buffer.from([0, 1, 2, 0xff, 0xfe]), 1],
    [`${base}/big`, randomBytes(BIG), 1],
  ];
  for (const [topic, payload, qos] of cases) {
    await withTimeout(pub.publishAsync(topic, payload, { qos }), `PUBLISH ${topic}`);
    await expectMessage(sub, topic, payload, qos);
  }
  // Several packets back to back (the server may coalesce them into frames).
  const burst = [];
  for (let i = 0; i < 20; i++) burst.push(Buffer.from(`burst ${i}`));
  await withTimeout(
    Promise.all(burst.map((p) => pub.publishAsync(`${base}/burst`, p, { qos: 1 }))),
    'burst PUBACKs',
  );
  for (const p of burst) await expectMessage(sub, `${base}/burst`, p, 1);
  await Promise.all([sub.endAsync(), pub.endAsync()]);
  console.log(`ok: MQTT.js v${version} over ${args.url}: QoS 0, QoS 1, ${BIG} bytes, 20-message burst`);
}

async function bridge() {
  for (const k of ['sub-topic', 'pub-topic', 'expect', 'reply']) if (!args[k]) fail(`--${k} is required`);
  const c = await connect('bridge');
  await subscribe(c, args['sub-topic']);
  console.log('subscribed');
  await expectMessage(c, args['sub-topic'], Buffer.from(args.expect), 1);
  await withTimeout(c.publishAsync(args['pub-topic'], args.reply, { qos: 1 }), 'PUBLISH reply');
  await c.endAsync();
  console.log(`ok: MQTT.js v${version} over ${args.url} received ${args.expect} and replied`);
}

async function refused() {
  const want = Number(args['expect-rc']);
  let client;
  try {
    client = await withTimeout(mqtt.connectAsync(args.url, options('refused')), 'CONNECT');
  } catch (e) {
    if (e instanceof Fail) throw e;
    if (e.code !== want) fail(`CONNECT failed with code ${e.code} (${e.message}), expected ${want}`);
    console.log(`ok: MQTT.js v${version} over ${args.url} refused with ${e.code}`);
    return;
  }
  client.end(true);
  fail('connected, but the CONNECT should have been refused');
}

const cases = { roundtrip, bridge, refused };
try {
  if (!cases[args.case]) fail(`unknown --case ${args.case}`);
  await cases[args.case]();
  clearTimeout(watchdog);
  process.exit(0);
} catch (e) {
  console.log(`FAIL: ${e instanceof Fail ? e.message : e.stack || e}`);
  process.exit(1);
}
