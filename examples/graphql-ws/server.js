'use strict';
// A GraphQL chat over websockets (graphql-ws, subprotocol
// "graphql-transport-ws") for koipond's graphql-ws example.
//
//   node server.js [PORT]        (or PORT=… node server.js; default 4000)
//
// Binds 127.0.0.1 only; the websocket endpoint is /graphql. A client sends
// connection_init with payload {token}, waits for connection_ack, then
// runs operations with "subscribe" messages, each with its own id:
//   subscription { messageAdded(room) }  – first a "subscribed" marker,
//                                          then every message of the room
//   mutation { postMessage(room, text) } – one "next" with the message,
//                                          then "complete"
// Messages carry sentAt, the server's send time in unix ms. The server
// also sends a protocol ping {"type":"ping"} every PING_MS to every
// acknowledged client and counts the pongs; clients may ping too (the
// server answers pong).
//
// GET /stats returns what arrived, as JSON: open (sockets open now),
// acked (of those, past connection_ack), subscribed (active
// subscriptions), connects (connection_acks since start), frames (every
// websocket frame clients sent), messages (the same per graphql-ws message
// type), posted (mutations that ran), delivered (subscription events sent)
// and invalid (operations refused: bad arguments or a query that does not
// validate). Counts start at 0 with each process.

const http = require('node:http');
const { WebSocketServer } = require('ws');
const { buildSchema } = require('graphql');
const { useServer } = require('graphql-ws/lib/use/ws');

const MAX_ROOM = 64;
const MAX_TEXT = 4096;
const MAX_FRAME = 64 * 1024;
// A subscriber that does not keep up loses its oldest events beyond this.
const MAX_QUEUE = 1000;
const MESSAGE_TYPES = ['connection_init', 'subscribe', 'complete', 'ping', 'pong'];

function envInt(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number.parseInt(v, 10);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`${name}=${JSON.stringify(v)} is not a non-negative integer`);
    process.exit(2);
  }
  return n;
}

const port = Number.parseInt(process.argv[2] || process.env.PORT || '4000', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`port ${JSON.stringify(process.argv[2] || process.env.PORT)} is not a TCP port`);
  process.exit(2);
}
const pingMS = envInt('PING_MS', 10000); // 0: the server never pings

const schema = buildSchema(`
  type Message {
    id: ID!
    "message for a posted message; subscribed for the marker that opens a subscription"
    kind: String!
    room: String!
    from: String!
    text: String!
    "the server's send time, unix milliseconds"
    sentAt: Float!
  }
  type Query { rooms: [String!]! }
  type Mutation { postMessage(room: String!, text: String!): Message! }
  type Subscription { messageAdded(room: String!): Message! }
`);

const stats = { frames: 0, connects: 0, posted: 0, delivered: 0, subscribed: 0, invalid: 0, messages: {} };
for (const t of MESSAGE_TYPES) stats.messages[t] = 0;
stats.messages.other = 0;
let acked = 0;
// room → set of push functions, one per active subscription.
const rooms = new Map();

// refuse counts a request this server does not accept and throws (the
// client gets it as a GraphQL error).
function refuse(why) {
  stats.invalid++;
  throw new Error(why);
}

function checkRoom(room) {
  if (typeof room !== 'string' || room.length === 0 || room.length > MAX_ROOM) {
    refuse(`room must be 1–${MAX_ROOM} characters`);
  }
}

// subscribe returns an async iterator of {messageAdded} events for room,
// starting with a "subscribed" marker, until the client completes it or
// disconnects.
function subscribe(room) {
  const queue = [];
  let wake = null;
  let done = false;
  const push = (m) => {
    if (queue.length >= MAX_QUEUE) queue.shift();
    queue.push(m);
    if (wake) {
      wake();
      wake = null;
    }
  };
  let set = rooms.get(room);
  if (!set) rooms.set(room, (set = new Set()));
  set.add(push);
  stats.subscribed++;
  push({ id: '0', kind: 'subscribed', room, from: '', text: '', sentAt: Date.now() });
  const finish = () => {
    if (done) return;
    done = true;
    stats.subscribed--;
    set.delete(push);
    if (set.size === 0) rooms.delete(room);
    if (wake) wake();
  };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      while (!done && queue.length === 0) await new Promise((r) => (wake = r));
      if (done) return { done: true, value: undefined };
      const m = queue.shift();
      if (m.kind === 'message') stats.delivered++;
      return { done: false, value: { messageAdded: m } };
    },
    async return() {
      finish();
      return { done: true, value: undefined };
    },
  };
}

const roots = {
  query: { rooms: () => [...rooms.keys()] },
  mutation: {
    postMessage({ room, text }, ctx) {
      checkRoom(room);
      if (text.length > MAX_TEXT) refuse(`text longer than ${MAX_TEXT}`);
      stats.posted++;
      const m = { id: String(stats.posted), kind: 'message', room, from: ctx.user, text, sentAt: Date.now() };
      for (const push of rooms.get(room) || []) push(m);
      return m;
    },
  },
  subscription: {
    messageAdded({ room }) {
      checkRoom(room);
      return subscribe(room);
    },
  },
};

const httpServer = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    const body = JSON.stringify({ open: wss.clients.size, acked, ...stats });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(body);
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});

const wss = new WebSocketServer({ server: httpServer, path: '/graphql', maxPayload: MAX_FRAME });

// Count what arrives, before graphql-ws reads it.
wss.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => {
    stats.frames++;
    let type = 'other';
    if (!isBinary) {
      try {
        const m = JSON.parse(String(data));
        if (m && MESSAGE_TYPES.includes(m.type)) type = m.type;
      } catch {
        // not JSON: graphql-ws closes the socket with 4400
      }
    }
    stats.messages[type]++;
  });
});

useServer(
  {
    schema,
    roots,
    context: (ctx) => ({ user: ctx.extra.user }),
    onConnect(ctx) {
      const p = ctx.connectionParams;
      const token = p && typeof p.token === 'string' ? p.token : '';
      if (token === '' || token.length > 256) return false; // closes 4403 Forbidden
      ctx.extra.user = token;
      stats.connects++;
      acked++;
      const socket = ctx.extra.socket;
      socket.once('close', () => acked--);
      if (pingMS > 0) {
        const t = setInterval(() => {
          if (socket.readyState === socket.OPEN) socket.send('{"type":"ping"}');
        }, pingMS);
        socket.once('close', () => clearInterval(t));
      }
      return true;
    },
    onError() {
      stats.invalid++; // an operation that did not validate
    },
  },
  wss,
);

httpServer.listen(port, '127.0.0.1', () => {
  const a = httpServer.address();
  // The test and the README read this line to learn the port.
  console.log(`graphql-ws chat listening on ws://127.0.0.1:${a.port}/graphql`);
});

function shutdown() {
  for (const c of wss.clients) c.close(1001, 'going away');
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
