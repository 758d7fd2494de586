// mqttjs_tls.mjs — one MQTT.js (npm "mqtt" 5.x) client over TLS with a
// client certificate (mqtts:// or wss://).
//
// usage: node mqttjs_tls.mjs URL CA_FILE CERT_FILE KEY_FILE [CLIENT_ID]
//
// Connects with the certificate, subscribes to a topic of its own at QoS 1,
// publishes a QoS 1 message to it and checks that it comes back once.
// Prints one JSON object {ok, url, error}; exit status 0 only if it did.
// The run is bounded by a timer (TOTAL_MS).

import fs from 'node:fs';
import mqtt from 'mqtt';

const TOTAL_MS = 10000;
const [url, caFile, certFile, keyFile, clientIdArg] = process.argv.slice(2);
if (!url || !caFile || !certFile || !keyFile) {
    process.stderr.write('usage: node mqttjs_tls.mjs URL CA CERT KEY\n');
    process.exit(2);
}

function finish(ok, error) {
    process.stdout.write(JSON.stringify({ ok, url, error: error ? String(error) : null }) + '\n');
    process.exit(ok ? 0 : 1);
}

const timer = setTimeout(() => finish(false, 'timed out'), TOTAL_MS);
const topic = `tlsjs/${process.pid}`;
const client = mqtt.connect(url, {
    ca: fs.readFileSync(caFile),
    cert: fs.readFileSync(certFile),
    key: fs.readFileSync(keyFile),
    clientId: clientIdArg || `mqttjs-tls-${process.pid}`,
    protocolVersion: 4,
    reconnectPeriod: 0,
    servername: 'localhost',
});
client.on('error', (e) => finish(false, e));
client.on('connect', () => {
    client.subscribe(topic, { qos: 1 }, (err) => {
        if (err) return finish(false, err);
        client.publish(topic, 'hello over tls', { qos: 1 });
    });
});
client.on('message', (t, payload) => {
    if (t === topic && payload.toString() === 'hello over tls') {
        clearTimeout(timer);
        client.end(false, {}, () => finish(true));
    }
});
