'use strict';
// A Socket.IO chat room for koipond's Socket.IO example.
//
//   node server.js [PORT]        (or PORT=… node server.js; default 3000)
//
// Binds 127.0.0.1 only. Clients connect to the default namespace with
// auth {token}, join a room ("join" with an ack), then send "chat"
// messages (acked, broadcast to the room with the server's send time
// sent_at in unix ms) and "typing" notices (broadcast, no ack). The
// Engine.IO heartbeat is the server's: it sends ping "2" every
// PING_INTERVAL_MS and drops a client that does not answer "3" within
// PING_TIMEOUT_MS.
//
// GET /stats returns what arrived, as JSON: open (Engine.IO connections
// open now), connected (namespace sockets open now), joined (of those,
// sockets in a room), connects (namespace connects since start), frames
// (every websocket frame clients sent) and per-kind counts of what clients
// sent: join, chat, typing, pong,
// invalid (events whose payload was not what this server accepts).
// Counts start at 0 with each process.

const http = require('node:http');
const { Server } = require('socket.io');

// Bounds on what a client may send; anything else is counted as invalid.
const MAX_ROOM = 64;
const MAX_TEXT = 4096;
const MAX_FRAME = 64 * 1024;

function envInt(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number.parseInt(v, 10);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`${name}=${JSON.stringify(v)} is not a positive integer`);
    process.exit(2);
  }
  return n;
}

const port = Number.parseInt(process.argv[2] || process.env.PORT || '3000', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`port ${JSON.stringify(process.argv[2] || process.env.PORT)} is not a TCP port`);
  process.exit(2);
}

const stats = { frames: 0, connects: 0, join: 0, chat: 0, typing: 0, pong: 0, invalid: 0 };
let joined = 0;

const httpServer = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    const body = JSON.stringify({
      open: io.engine.clientsCount,
      connected: io.of('/').sockets.size,
      joined,
      ...stats,
    });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(body);
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});

const io = new Server(httpServer, {
  transports: ['websocket'], // koi speak raw websocket frames, no long-polling
  serveClient: false,
  pingInterval: envInt('PING_INTERVAL_MS', 25000),
  pingTimeout: envInt('PING_TIMEOUT_MS', 20000),
  maxHttpBufferSize: MAX_FRAME,
});

function validRoom(r) {
  return typeof r === 'string' && r.length > 0 && r.length <= MAX_ROOM;
}

// A client must name itself: CONNECT "40{"token":"…"}".
io.use((socket, next) => {
  const auth = socket.handshake.auth;
  const token = auth && typeof auth.token === 'string' ? auth.token : '';
  if (token === '' || token.length > 256) {
    next(new Error('auth.token required'));
    return;
  }
  socket.data.user = token;
  next();
});

// Every Engine.IO packet a client sends (one websocket frame each): CONNECT,
// events, heartbeat answers "3".
io.engine.on('connection', (conn) => {
  conn.on('packet', (p) => {
    stats.frames++;
    if (p && p.type === 'pong') stats.pong++;
  });
});

io.on('connection', (socket) => {
  stats.connects++;
  let room = '';
  socket.on('disconnect', () => {
    if (room !== '') joined--;
  });

  socket.on('join', (msg, ack) => {
    if (!msg || !validRoom(msg.room) || typeof ack !== 'function') {
      stats.invalid++;
      return;
    }
    stats.join++;
    if (room !== '') socket.leave(room);
    else joined++;
    room = msg.room;
    socket.join(room);
    ack({ ok: true, room, members: io.of('/').adapter.rooms.get(room)?.size ?? 0 });
  });

  socket.on('chat', (msg, ack) => {
    if (room === '' || !msg || typeof msg.text !== 'string' || msg.text.length > MAX_TEXT) {
      stats.invalid++;
      if (typeof ack === 'function') ack({ ok: false, error: room === '' ? 'not in a room' : 'bad message' });
      return;
    }
    stats.chat++;
    const id = stats.chat;
    io.to(room).emit('chat', { id, room, from: socket.data.user, text: msg.text, sent_at: Date.now() });
    if (typeof ack === 'function') ack({ ok: true, id });
  });

  socket.on('typing', () => {
    if (room === '') {
      stats.invalid++;
      return;
    }
    stats.typing++;
    socket.to(room).emit('typing', { room, from: socket.data.user, sent_at: Date.now() });
  });

  socket.onAny((event) => {
    if (event !== 'join' && event !== 'chat' && event !== 'typing') stats.invalid++;
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  const a = httpServer.address();
  // The test and the README read this line to learn the port.
  console.log(`socket.io chat listening on http://127.0.0.1:${a.port}`);
});

function shutdown() {
  io.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
