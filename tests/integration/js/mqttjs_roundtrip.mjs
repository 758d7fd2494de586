// mqttjs_roundtrip.mjs — one MQTT.js (npm "mqtt" 5.x) session against a broker.
//
// usage: node mqttjs_roundtrip.mjs URL PROTOCOL_VERSION
//   URL               mqtt://127.0.0.1:PORT or ws://127.0.0.1:PORT/mqtt
//   PROTOCOL_VERSION  4 (MQTT 3.1.1) or 5 (MQTT 5.0)
//
// Connects, subscribes at QoS 2, publishes QoS 0/1/2 (with 5.0: user
// properties, response topic, correlation data, content type; the
// subscription carries a subscription identifier), checks each comes back
// once with its QoS, payload and properties; publishes a retained message and
// checks that a second client subscribing afterwards gets it with the retain
// flag (and its properties); with 5.0, publishes through topic aliases (the
// client's, when the server's CONNACK allows them) to a client that allows
// the server aliases too, and checks the full topics come out; clears the
// retained message and disconnects every client.
//
// Prints one JSON object: {ok, url, protocolVersion, mqttjs, checks: [{name,
// ok, detail}], error}. Exit status 0 only if every check passed, 1 if one
// failed, 2 on bad usage. The whole run is bounded by a timer (TOTAL_MS).

import mqtt from 'mqtt';

const TOTAL_MS = 8000;
const STEP_MS = 3000;

const [url, pvArg] = process.argv.slice(2);
const version = Number(pvArg);
if (!url || (version !== 4 && version !== 5)) {
    process.stderr.write('usage: node mqttjs_roundtrip.mjs URL 4|5\n');
    process.exit(2);
}
const v5 = version === 5;

const checks = [];
let ending = false;
const clients = [];
let finished = false;

function check(name, ok, detail) {
    checks.push({ name, ok: Boolean(ok), detail: detail === undefined ? null : detail });
    return Boolean(ok);
}

function finish(error) {
    if (finished)
        return;
    finished = true;
    for (const c of clients) {
        try {
            c.end(true);
        } catch (e) {
            // already closed
        }
    }
    const ok = !error && checks.length > 0 && checks.every((c) => c.ok);
    const summary = {
        ok,
        url,
        protocolVersion: version,
        mqttjs: mqtt.MQTTJS_VERSION || null,
        checks,
        error: error ? String(error && error.stack ? error.stack : error) : null,
    };
    process.stdout.write(JSON.stringify(summary) + '\n');
    process.exit(ok ? 0 : 1);
}

const overall = setTimeout(() => finish(new Error(`timed out after ${TOTAL_MS} ms`)), TOTAL_MS);
overall.unref();

function waitFor(pred, ms, what) {
    return new Promise((resolve, reject) => {
        const t0 = Date.now();
        const tick = () => {
            if (pred())
                return resolve();
            if (Date.now() - t0 >= ms)
                return reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
            setTimeout(tick, 10);
        };
        tick();
    });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, what) {
    let t;
    const timeout = new Promise((_, reject) => {
        t = setTimeout(() => reject(new Error(`timed out after ${STEP_MS} ms: ${what}`)), STEP_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

// Client ids stay within 23 characters (the 3.1.1 limit a server may enforce).
const tag = `${process.pid.toString(36)}${(Date.now() % 1e8).toString(36)}`;
const base = `mqttjs/${tag}/v${version}`;

function options(suffix) {
    return {
        protocolVersion: version,
        clientId: `mjs-${tag}-${suffix}`.slice(0, 23),
        clean: true,
        keepalive: 30,
        connectTimeout: STEP_MS,
        reconnectPeriod: 0,
    };
}

async function connect(suffix, extra) {
    const opts = Object.assign(options(suffix), extra || {});
    const c = mqtt.connect(url, opts);
    clients.push(c);
    c.connack = await withTimeout(new Promise((resolve, reject) => {
        c.once('connect', resolve);
        c.once('error', reject);
        c.once('close', () => reject(new Error(`connection ${suffix} closed before CONNACK`)));
    }), `connect ${suffix}`);
    // An error while ending (e.g. EPIPE writing the WebSocket close frame
    // after the server closed on DISCONNECT) is not a protocol failure.
    c.on('error', (e) => {
        if (!ending)
            check(`no client error (${suffix})`, false, String(e));
    });
    return c;
}

function propsFor(q) {
    if (!v5)
        return undefined;
    return {
        userProperties: { k: 'v', qos: String(q) },
        responseTopic: `${base}/reply/${q}`,
        correlationData: Buffer.from([0, 1, 2, 0xfe, 0xff, q]),
        contentType: 'application/json',
    };
}

function checkProps(name, got, want, subId) {
    if (!v5)
        return;
    const p = got || {};
    check(`${name} userProperties`, JSON.stringify(p.userProperties) === JSON.stringify(want.userProperties),
        { got: p.userProperties, want: want.userProperties });
    check(`${name} responseTopic`, p.responseTopic === want.responseTopic, { got: p.responseTopic });
    check(`${name} correlationData`,
        Buffer.isBuffer(p.correlationData) && p.correlationData.equals(want.correlationData),
        { got: p.correlationData ? Buffer.from(p.correlationData).toString('hex') : null,
          want: want.correlationData.toString('hex') });
    check(`${name} contentType`, p.contentType === want.contentType, { got: p.contentType });
    if (subId !== undefined) {
        const ids = [].concat(p.subscriptionIdentifier === undefined ? [] : p.subscriptionIdentifier);
        check(`${name} subscriptionIdentifier`, ids.length === 1 && ids[0] === subId, { got: ids, want: subId });
    }
}

async function main() {
    // 1. QoS 0/1/2 round trip through one client's own subscription.
    const a = await connect('a');
    check('connect a', a.connected);
    const got = [];
    a.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), packet }));
    const SUB_ID = 7;
    const subOpts = v5 ? { qos: 2, properties: { subscriptionIdentifier: SUB_ID } } : { qos: 2 };
    const granted = await withTimeout(a.subscribeAsync(`${base}/q/#`, subOpts), 'subscribe');
    check('suback grants QoS 2', granted.length === 1 && granted[0].qos === 2, granted);

    for (const q of [0, 1, 2]) {
        const opts = { qos: q };
        if (v5)
            opts.properties = propsFor(q);
        await withTimeout(a.publishAsync(`${base}/q/${q}`, `payload-${q}`, opts), `publish QoS ${q}`);
        check(`publish QoS ${q} completed`, true);
    }
    await waitFor(() => got.length >= 3, STEP_MS, 'three messages back').catch((e) =>
        check('three messages received', false, { error: String(e), got: got.map((m) => m.topic) }));
    await sleep(200); // a duplicate would arrive by now
    check('exactly three messages received', got.length === 3, got.map((m) => [m.topic, m.payload, m.packet.qos]));
    for (const q of [0, 1, 2]) {
        const mine = got.filter((m) => m.topic === `${base}/q/${q}`);
        if (!check(`QoS ${q} delivered once`, mine.length === 1, mine.length))
            continue;
        const m = mine[0];
        check(`QoS ${q} payload`, m.payload === `payload-${q}`, m.payload);
        check(`QoS ${q} delivered at QoS ${q}`, m.packet.qos === q, m.packet.qos);
        check(`QoS ${q} retain flag clear`, m.packet.retain === false, m.packet.retain);
        checkProps(`QoS ${q}`, m.packet.properties, propsFor(q), SUB_ID);
    }

    // 2. A retained message reaches a client that subscribes later.
    const retTopic = `${base}/retained`;
    const retOpts = { qos: 1, retain: true };
    if (v5)
        retOpts.properties = propsFor(9);
    await withTimeout(a.publishAsync(retTopic, 'kept', retOpts), 'publish retained');
    const b = await connect('b');
    check('connect b', b.connected);
    const gotB = [];
    b.on('message', (topic, payload, packet) => gotB.push({ topic, payload: payload.toString(), packet }));
    const grantedB = await withTimeout(b.subscribeAsync(retTopic, { qos: 1 }), 'subscribe retained');
    check('suback grants QoS 1', grantedB.length === 1 && grantedB[0].qos === 1, grantedB);
    await waitFor(() => gotB.length >= 1, STEP_MS, 'retained message').catch((e) =>
        check('retained message received', false, String(e)));
    if (gotB.length >= 1) {
        const m = gotB[0];
        check('retained topic', m.topic === retTopic, m.topic);
        check('retained payload', m.payload === 'kept', m.payload);
        check('retained flag set', m.packet.retain === true, m.packet.retain);
        check('retained QoS 1', m.packet.qos === 1, m.packet.qos);
        checkProps('retained', m.packet.properties, propsFor(9));
    }

    // 3. 5.0 topic aliases both ways: p aliases its publications whenever
    // the server's CONNACK allows (MQTT.js autoAssignTopicAlias); r allows
    // the server 8 aliases towards it, which MQTT.js resolves.
    if (v5) {
        const r = await connect('r', { properties: { topicAliasMaximum: 8 } });
        const p = await connect('p', { autoAssignTopicAlias: true, autoUseTopicAlias: true });
        const serverMax = (p.connack.properties || {}).topicAliasMaximum || 0;
        let aliasedOut = 0, aliasedIn = 0;
        p.on('packetsend', (pk) => {
            if (pk.cmd === 'publish' && pk.properties && pk.properties.topicAlias)
                aliasedOut++;
        });
        r.on('packetreceive', (pk) => {
            if (pk.cmd === 'publish' && pk.properties && pk.properties.topicAlias)
                aliasedIn++;
        });
        const gotR = [];
        r.on('message', (topic, payload, packet) => gotR.push({ topic, payload: payload.toString(), qos: packet.qos }));
        await withTimeout(r.subscribeAsync(`${base}/alias/#`, { qos: 1 }), 'subscribe alias');
        const want = [];
        for (let i = 0; i < 6; i++) {
            const t = `${base}/alias/${i % 2}`;
            want.push([t, `al-${i}`]);
            await withTimeout(p.publishAsync(t, `al-${i}`, { qos: i % 2 ? 1 : 0 }), `publish alias ${i}`);
        }
        await waitFor(() => gotR.length >= want.length, STEP_MS, 'aliased messages').catch((e) =>
            check('aliased messages received', false, String(e)));
        check('aliased publications routed under their full topics',
            JSON.stringify(gotR.map((m) => [m.topic, m.payload])) === JSON.stringify(want),
            { got: gotR, serverTopicAliasMaximum: serverMax, aliasedOut, aliasedIn });
        if (serverMax > 0)
            check('client used topic aliases (server allows them)', aliasedOut >= 4, { aliasedOut, serverMax });
        check('server aliases within the client maximum', aliasedIn <= want.length, { aliasedIn });
    }

    // 4. Clear the retained message, disconnect cleanly.
    await withTimeout(a.publishAsync(retTopic, '', { qos: 1, retain: true }), 'clear retained');
    ending = true;
    for (const c of clients)
        await withTimeout(c.endAsync(), 'disconnect');
    check('disconnected', clients.every((c) => !c.connected));
}

main().then(() => finish(null), (e) => finish(e));
