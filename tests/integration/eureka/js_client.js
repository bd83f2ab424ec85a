'use strict';
// eureka-js-client 4.5, unmodified, against a Eureka registry: registers APP (lower case, no
// instanceId, as the library does), heartbeats every second, fetches the registry as JSON every
// half second, and reports on stdout one JSON object a line:
//   {"event":"registered"}   {"event":"heartbeat"}   {"event":"deregistered"}
//   {"event":"discovered","instances":[{"instanceId":..,"port":..,"status":..}]}  (DISCOVER's instances, on change)
// SIGTERM deregisters (DELETE) and exits. OPTIONS, a JSON object, may set "metadata".
// Usage: node js_client.js REGISTRY_PORT APP PORT DISCOVER [OPTIONS]
const { Eureka } = require('eureka-js-client');

const [registryPort, app, port, discover, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson || '{}');
const say = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const toStderr = (level) => (...args) => process.stderr.write(`${level} ${args.map(String).join(' ')}\n`);

const client = new Eureka({
  logger: { debug() {}, info: toStderr('info'), warn: toStderr('warn'), error: toStderr('error') },
  instance: {
    app,
    hostName: 'localhost',
    ipAddr: '127.0.0.1',
    statusPageUrl: `http://localhost:${port}/info`,
    port: { $: Number(port), '@enabled': true },
    vipAddress: `${app}.vip`,
    dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
    ...(options.metadata ? { metadata: options.metadata } : {}),
  },
  eureka: {
    host: '127.0.0.1',
    port: Number(registryPort),
    servicePath: '/eureka/apps/',
    heartbeatInterval: 1000,
    registryFetchInterval: 500,
    maxRetries: 0,
  },
});

let last = null;
client.on('registered', () => say({ event: 'registered' }));
client.on('heartbeat', () => say({ event: 'heartbeat' }));
client.on('registryUpdated', () => {
  const instances = (client.cache.app[discover.toUpperCase()] || []).map((i) => ({
    instanceId: i.instanceId, port: i.port && i.port.$, status: i.status,
  }));
  const text = JSON.stringify(instances);
  if (text !== last) {
    last = text;
    say({ event: 'discovered', instances });
  }
});
process.on('SIGTERM', () => client.stop(() => { say({ event: 'deregistered' }); process.exit(0); }));
client.start();
