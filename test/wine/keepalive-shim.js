// Preloaded (node --require) by scripts/wine-job.sh only. Wine 8 fails a TCP connect when SO_KEEPALIVE is
// set on the socket before it connects (libuv then reports UNKNOWN), which is what Node's fetch (undici)
// does; Windows itself accepts it. Deferring setKeepAlive to the connect event lets the Hub and server
// tests run under Wine with Node's own fetch; nothing in the package needs or loads this.
'use strict'
const net = require('node:net')
const setKeepAlive = net.Socket.prototype.setKeepAlive
net.Socket.prototype.setKeepAlive = function (...args) {
  if (this.connecting) {
    this.once('connect', () => setKeepAlive.apply(this, args))
    return this
  }
  return setKeepAlive.apply(this, args)
}
