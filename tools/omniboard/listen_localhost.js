// Preloaded with `node -r` before Omniboard, which listens on all interfaces: every TCP server of the process
// listens on $BIND_HOST (default 127.0.0.1) instead, whatever host it asked for.
'use strict';
const net = require('net');

const host = process.env.BIND_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const [first] = args;
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === 'string') args[1] = host;
    else args.splice(1, 0, host);
  } else if (first && typeof first === 'object' && 'port' in first) {
    // listen({port, host, ...}[, callback])
    args[0] = { ...first, host };
  }
  return listen.apply(this, args);
};
