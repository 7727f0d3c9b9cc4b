// The design article's own client, run against the rtwidgets gateway (conformance test).
// "The article" below is the design rtwidgets follows, summarised in docs/design.md.
//
// Part 1 is a transcription of the article's `RealtimeConnection` ("Robust WebSocket
// Client") and `Channel` / `ChannelManager` ("Channel-Based Messaging System") from
// ../../../shared/seed/000_096e0aa125b931fe.txt to plain JavaScript. Rules of the
// transcription: same logic, same messages, same quirks; only TypeScript types and
// `private` are stripped, constructor parameter properties become assignments, and
// `window.setTimeout` / `window.setInterval` become the globals (Node has no `window`).
// Do not "fix" anything in part 1: the point is to see how the article's code behaves.
//
// Part 2 is the driver (not from the article): a scenario run against a gateway,
// printing one JSON object per line of what it observed. Inputs (environment):
//   RTW_URL          ws://host:port of the gateway (client A's, and B's unless RTW_URL_B)
//   RTW_URL_B        optional: another gateway (sharing A's broker) for client B
//   RTW_TOKEN_A      token for user A (alice), RTW_TOKEN_B for user B (bob)
//   RTW_BAD_TOKEN    a token the gateway must refuse (full scenario only)
//   RTW_CHANNEL      channel name to use
//   RTW_CHANNEL_2    cross scenario only: a second channel (default RTW_CHANNEL + '-2')
//   RTW_SCENARIO     'full' (default) or 'cross': the short cross-gateway scenario
// With RTW_URL_B in the full scenario, the test must stop both gateways at
// `ready_for_shutdown`.
// Tokens come from the environment, not argv, so they never show in process listings.
// Run: node --experimental-websocket tests/conformance/article_client.mjs

import net from 'node:net';

// ===================================================================== part 1: article

// src/realtime/connection.ts
class RealtimeConnection {
  ws = null;
  state = 'disconnected';
  reconnectAttempts = 0;
  heartbeatTimer = null;
  heartbeatTimeout = null;
  reconnectTimer = null;
  messageQueue = [];
  lastMessageId = 0;
  pendingAcks = new Map();

  constructor(config, events) {
    this.config = config;
    this.events = events;
  }

  async connect() {
    if (this.state === 'connected' || this.state === 'connecting') {
      return;
    }
    this.setState('connecting');
    try {
      const { token } = await this.config.auth();
      const url = new URL(this.config.url);
      url.searchParams.set('token', token);
      this.ws = new WebSocket(url.toString(), this.config.protocols);
      this.setupEventHandlers();
      await this.waitForConnection();
      this.setState('connected');
      this.startHeartbeat();
      this.flushMessageQueue();
      this.reconnectAttempts = 0;
    } catch (error) {
      this.setState('disconnected');
      throw error;
    }
  }

  setupEventHandlers() {
    if (!this.ws) return;
    this.ws.onmessage = (event) => {
      this.handleMessage(event.data);
    };
    this.ws.onerror = (event) => {
      this.events.onError(new Error('WebSocket error'));
    };
    this.ws.onclose = (event) => {
      this.handleClose(event);
    };
  }

  waitForConnection() {
    return new Promise((resolve, reject) => {
      if (!this.ws) {
        reject(new Error('No WebSocket instance'));
        return;
      }
      const timeout = setTimeout(() => {
        reject(new Error('Connection timeout'));
      }, 10000);
      this.ws.onopen = () => {
        clearTimeout(timeout);
        resolve();
      };
      this.ws.onerror = () => {
        clearTimeout(timeout);
        reject(new Error('Connection failed'));
      };
    });
  }

  handleMessage(data) {
    // Reset heartbeat timeout on any message
    this.resetHeartbeatTimeout();
    try {
      const message = JSON.parse(data);
      // Handle protocol messages
      if (message.type === 'pong') {
        return; // Heartbeat response
      }
      if (message.type === 'ack') {
        this.handleAck(message.id);
        return;
      }
      // Pass to application
      this.events.onMessage(message);
    } catch (error) {
      this.events.onError(new Error(`Failed to parse message: ${data}`));
    }
  }

  handleAck(messageId) {
    const pending = this.pendingAcks.get(messageId);
    if (pending) {
      clearTimeout(pending.timeout);
      pending.resolve();
      this.pendingAcks.delete(messageId);
    }
  }

  handleClose(event) {
    this.stopHeartbeat();
    this.ws = null;
    // Clean up pending acks
    for (const [id, pending] of this.pendingAcks) {
      clearTimeout(pending.timeout);
      pending.reject(new Error('Connection closed'));
    }
    this.pendingAcks.clear();
    // Determine if we should reconnect
    if (event.code === 1000 || event.code === 1001) {
      // Normal closure, don't reconnect
      this.setState('disconnected');
      return;
    }
    if (event.code === 4001) {
      // Auth error, don't reconnect
      this.events.onError(new Error('Authentication failed'));
      this.setState('disconnected');
      return;
    }
    // Attempt reconnection
    if (this.config.reconnect.enabled) {
      this.scheduleReconnect();
    } else {
      this.setState('disconnected');
    }
  }

  scheduleReconnect() {
    if (this.reconnectAttempts >= this.config.reconnect.maxAttempts) {
      this.events.onError(new Error('Max reconnection attempts reached'));
      this.setState('disconnected');
      return;
    }
    this.setState('reconnecting');
    // Exponential backoff with jitter
    const baseDelay = this.config.reconnect.baseDelay;
    const maxDelay = this.config.reconnect.maxDelay;
    const jitter = this.config.reconnect.jitterFactor;
    const exponentialDelay = Math.min(
      baseDelay * Math.pow(2, this.reconnectAttempts),
      maxDelay
    );
    const jitteredDelay = exponentialDelay * (1 + (Math.random() - 0.5) * jitter);
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectAttempts++;
      try {
        await this.connect();
      } catch (error) {
        // connect() will trigger another reconnect attempt
      }
    }, jitteredDelay);
  }

  startHeartbeat() {
    this.heartbeatTimer = setInterval(() => {
      this.sendPing();
    }, this.config.heartbeat.interval);
  }

  stopHeartbeat() {
    if (this.heartbeatTimer) {
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = null;
    }
    if (this.heartbeatTimeout) {
      clearTimeout(this.heartbeatTimeout);
      this.heartbeatTimeout = null;
    }
  }

  sendPing() {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'ping', t: Date.now() }));
      this.heartbeatTimeout = setTimeout(() => {
        // No pong received, connection is dead
        this.ws?.close(4000, 'Heartbeat timeout');
      }, this.config.heartbeat.timeout);
    }
  }

  resetHeartbeatTimeout() {
    if (this.heartbeatTimeout) {
      clearTimeout(this.heartbeatTimeout);
      this.heartbeatTimeout = null;
    }
  }

  setState(state) {
    if (this.state !== state) {
      this.state = state;
      this.events.onStateChange(state);
    }
  }

  send(data, options = {}) {
    const message = JSON.stringify(data);
    if (this.state !== 'connected' || !this.ws) {
      // Queue message for later delivery
      return new Promise((resolve, reject) => {
        this.messageQueue.push({ data: message, resolve, reject });
      });
    }
    if (options.ack) {
      return this.sendWithAck(message);
    }
    this.ws.send(message);
    return Promise.resolve();
  }

  sendWithAck(message) {
    return new Promise((resolve, reject) => {
      const messageId = ++this.lastMessageId;
      const messageWithId = JSON.parse(message);
      messageWithId._id = messageId;
      const timeout = setTimeout(() => {
        this.pendingAcks.delete(messageId);
        reject(new Error('Ack timeout'));
      }, 5000);
      this.pendingAcks.set(messageId, { resolve, reject, timeout });
      this.ws.send(JSON.stringify(messageWithId));
    });
  }

  flushMessageQueue() {
    while (this.messageQueue.length > 0 && this.state === 'connected') {
      const { data, resolve, reject } = this.messageQueue.shift();
      try {
        this.ws?.send(data);
        resolve();
      } catch (error) {
        reject(error);
      }
    }
  }

  disconnect() {
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
    }
    this.stopHeartbeat();
    if (this.ws) {
      this.ws.close(1000, 'Client disconnect');
      this.ws = null;
    }
    this.setState('disconnected');
  }

  getState() {
    return this.state;
  }
}

// src/realtime/channels.ts
class Channel {
  state = 'unsubscribed';
  members = new Map();
  messageBuffer = [];
  lastEventId = null;

  constructor(name, connection, options, events) {
    this.name = name;
    this.connection = connection;
    this.options = options;
    this.events = events;
  }

  async subscribe() {
    if (this.state === 'subscribed' || this.state === 'subscribing') {
      return;
    }
    this.state = 'subscribing';
    try {
      await this.connection.send({
        type: 'subscribe',
        channel: this.name,
        options: {
          presence: this.options.presence,
          history: this.options.history,
          lastEventId: this.lastEventId,
        },
      }, { ack: true });
      this.state = 'subscribed';
    } catch (error) {
      this.state = 'unsubscribed';
      throw error;
    }
  }

  async unsubscribe() {
    if (this.state === 'unsubscribed') {
      return;
    }
    this.state = 'unsubscribing';
    try {
      await this.connection.send({
        type: 'unsubscribe',
        channel: this.name,
      }, { ack: true });
    } finally {
      this.state = 'unsubscribed';
      this.members.clear();
    }
  }

  async publish(data) {
    if (this.state !== 'subscribed') {
      throw new Error('Channel not subscribed');
    }
    await this.connection.send({
      type: 'publish',
      channel: this.name,
      data,
    }, { ack: true });
  }

  handleMessage(message) {
    switch (message.type) {
      case 'message':
        if (message.eventId) {
          this.lastEventId = message.eventId;
        }
        this.events.onMessage(message.data);
        break;
      case 'history':
        // Replay historical messages in order
        const history = message.data;
        history.forEach(msg => this.events.onMessage(msg));
        break;
      case 'presence_join':
        this.members.set(message.member.clientId, message.member);
        this.events.onPresenceJoin?.(message.member);
        break;
      case 'presence_leave':
        this.members.delete(message.member.clientId);
        this.events.onPresenceLeave?.(message.member);
        break;
      case 'presence_update':
        this.members.set(message.member.clientId, message.member);
        this.events.onPresenceUpdate?.(message.member);
        break;
      case 'presence_sync':
        // Full presence state sync (after reconnect)
        this.members.clear();
        message.members?.forEach(m => this.members.set(m.clientId, m));
        break;
    }
  }

  getMembers() {
    return Array.from(this.members.values());
  }

  async updatePresence(data) {
    if (!this.options.presence) {
      throw new Error('Presence not enabled for this channel');
    }
    await this.connection.send({
      type: 'presence_update',
      channel: this.name,
      data,
    }, { ack: true });
  }

  getState() {
    return this.state;
  }
}

// Channel manager for handling multiple subscriptions
class ChannelManager {
  channels = new Map();

  constructor(connection) {
    this.connection = connection;
    // Route incoming messages to channels
    this.setupMessageRouting();
  }

  setupMessageRouting() {
    // This would be called by the connection's onMessage handler
  }

  subscribe(channelName, events, options = {}) {
    const existingChannel = this.channels.get(channelName);
    if (existingChannel) {
      return existingChannel;
    }
    const channel = new Channel(channelName, this.connection, options, events);
    this.channels.set(channelName, channel);
    channel.subscribe().catch(error => {
      events.onError?.(error);
    });
    return channel;
  }

  unsubscribe(channelName) {
    const channel = this.channels.get(channelName);
    if (channel) {
      channel.unsubscribe();
      this.channels.delete(channelName);
    }
  }

  routeMessage(channelName, message) {
    const channel = this.channels.get(channelName);
    if (channel) {
      channel.handleMessage(message);
    }
  }
}

export { RealtimeConnection, Channel, ChannelManager };

// ===================================================================== part 2: driver

const out = (event, fields = {}) => {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Wait for a condition (never for a fixed time when a condition exists).
async function waitFor(cond, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(5);
  }
}

// Observation only: a WebSocket that records every frame and close code per client,
// labelled by the token in the URL. The article's code uses the global `WebSocket`,
// so installing this subclass globally does not change a line of part 1.
const NativeWebSocket = globalThis.WebSocket;
const labels = new Map(); // token -> label
const trace = {}; // label -> { frames: [{dir, msg}], closes: [code], sockets: n }

function traceOf(label) {
  trace[label] ??= { frames: [], closes: [], sockets: 0 };
  return trace[label];
}

class TracingWebSocket extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    const label = labels.get(new URL(url).searchParams.get('token')) ?? 'unknown';
    const t = traceOf(label);
    t.sockets++;
    this._label = label;
    this.addEventListener('message', (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { msg = { unparsable: String(e.data) }; }
      t.frames.push({ dir: 'in', msg });
    });
    this.addEventListener('close', (e) => t.closes.push({ code: e.code, reason: e.reason }));
  }

  send(data) {
    traceOf(this._label).frames.push({ dir: 'out', msg: JSON.parse(data) });
    super.send(data);
  }
}
globalThis.WebSocket = TracingWebSocket;

const framesIn = (label, type) =>
  traceOf(label).frames.filter((f) => f.dir === 'in' && f.msg.type === type).map((f) => f.msg);
const framesOut = (label, type) =>
  traceOf(label).frames.filter((f) => f.dir === 'out' && f.msg.type === type).map((f) => f.msg);

// A TCP proxy that can cut every connection abruptly (the client sees 1006, as on a
// network failure) and hold new connections until released, so the test controls
// exactly what happens while the client is away.
function startProxy(targetHost, targetPort) {
  const live = new Set();
  const held = [];
  let holding = false;
  const pipe = (client) => {
    const upstream = net.connect(targetPort, targetHost);
    live.add(client);
    live.add(upstream);
    const kill = () => {
      client.destroy();
      upstream.destroy();
      live.delete(client);
      live.delete(upstream);
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', kill);
    upstream.on('close', kill);
    client.pipe(upstream);
    upstream.pipe(client);
  };
  const server = net.createServer((client) => {
    if (holding) {
      client.pause();
      held.push(client);
    } else {
      pipe(client);
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        cut() {
          holding = true;
          for (const s of live) s.resetAndDestroy();
          live.clear();
        },
        release() {
          holding = false;
          for (const c of held.splice(0)) pipe(c);
        },
        close() {
          server.close();
        },
      });
    });
  });
}

function makeClient(label, url, token, { heartbeatInterval = 30000, baseDelay = 100 } = {}) {
  labels.set(token, label);
  const log = { states: [], errors: [], messages: [], authCalls: 0 };
  let manager = null;
  const connection = new RealtimeConnection(
    {
      url,
      reconnect: { enabled: true, maxAttempts: 10, baseDelay, maxDelay: 1000, jitterFactor: 0.3 },
      // A long timeout: the article leaks the previous ping's timer when a pong is slower
      // than the interval, and a leaked timer would cut the socket mid-scenario.
      heartbeat: { interval: heartbeatInterval, timeout: 30000 },
      auth: async () => {
        log.authCalls++;
        return { token };
      },
    },
    {
      onStateChange: (s) => log.states.push(s),
      // The wiring the article leaves to the app ("would be called by the
      // connection's onMessage handler"): route every frame to its channel.
      onMessage: (msg) => {
        log.messages.push(msg);
        manager?.routeMessage(msg.channel, msg);
      },
      onError: (e) => log.errors.push(e.message),
    }
  );
  manager = new ChannelManager(connection);
  return { label, connection, manager, log };
}

function channelEvents() {
  const seen = { messages: [], joins: [], leaves: [], updates: [], errors: [] };
  return {
    seen,
    events: {
      onMessage: (m) => seen.messages.push(m),
      onPresenceJoin: (m) => seen.joins.push(m),
      onPresenceLeave: (m) => seen.leaves.push(m),
      onPresenceUpdate: (m) => seen.updates.push(m),
      onError: (e) => seen.errors.push(e.message),
    },
  };
}

async function scenario() {
  const env = process.env;
  const url = env.RTW_URL;
  const channel = env.RTW_CHANNEL || 'room:conformance';
  const gw = new URL(url);

  // 1. A refused token: close 4001, 'Authentication failed', no reconnect.
  const bad = makeClient('bad', url, env.RTW_BAD_TOKEN, { baseDelay: 20 });
  let connectOutcome;
  try {
    await bad.connection.connect();
    connectOutcome = 'resolved';
  } catch (e) {
    connectOutcome = `rejected: ${e.message}`;
  }
  await waitFor(() => traceOf('bad').closes.length > 0 || bad.log.authCalls > 1, 'bad-token close');
  // A reconnect would start within baseDelay * 1.15 (first attempt); give it ample room.
  await sleep(500);
  out('bad_token', {
    connectOutcome,
    closes: traceOf('bad').closes,
    states: bad.log.states,
    errors: bad.log.errors,
    authCalls: bad.log.authCalls,
    sockets: traceOf('bad').sockets,
    finalState: bad.connection.getState(),
    reconnectPending: bad.connection.state === 'reconnecting',
  });
  bad.connection.disconnect();

  // 2. A connects through the proxy (so it can be cut later) and gets `connected`.
  const proxy = await startProxy(gw.hostname, Number(gw.port));
  const a = makeClient('A', `ws://127.0.0.1:${proxy.port}`, env.RTW_TOKEN_A, { heartbeatInterval: 300 });
  await a.connection.connect();
  await waitFor(() => a.log.messages.some((m) => m.type === 'connected'), 'A connected frame');
  out('connected', { label: 'A', state: a.connection.getState(), frame: framesIn('A', 'connected')[0] });

  // 3. A subscribes with presence and history; the ack settles the subscription.
  const evA = channelEvents();
  const chA = a.manager.subscribe(channel, evA.events, { presence: true, history: 10 });
  await waitFor(() => chA.getState() !== 'subscribing', 'A subscribe ack');
  out('subscribed', {
    label: 'A',
    state: chA.getState(),
    sent: framesOut('A', 'subscribe')[0],
    acks: framesIn('A', 'ack'),
    errors: evA.seen.errors,
  });

  // 4. B joins with presence: A sees presence_join, B gets presence_sync.
  const b = makeClient('B', env.RTW_URL_B || url, env.RTW_TOKEN_B);
  await b.connection.connect();
  await waitFor(() => b.log.messages.some((m) => m.type === 'connected'), 'B connected frame');
  const evB = channelEvents();
  const chB = b.manager.subscribe(channel, evB.events, { presence: true, history: 10 });
  await waitFor(() => chB.getState() !== 'subscribing', 'B subscribe ack');
  // A subscribe the token does not allow: the gateway answers `error forbidden` with
  // the request's id instead of an ack; the article's client has no handler for
  // `error`, so the subscribe can only fail by its 5 s ack timeout. Started now and
  // checked at the end so the wait overlaps the rest of the scenario.
  const evF = channelEvents();
  const chF = b.manager.subscribe('secret:forbidden', evF.events, {});
  const bClientId = framesIn('B', 'connected')[0].clientId;
  await waitFor(() => evA.seen.joins.some((m) => m.clientId === bClientId), 'presence_join of B at A');
  out('presence_join', {
    channelState: chB.getState(),
    member: evA.seen.joins.find((m) => m.clientId === bClientId),
    joinsAtA: evA.seen.joins,
    membersAtB: chB.getMembers(),
    presenceSyncAtB: framesIn('B', 'presence_sync'),
  });

  // 5. B updates its presence: the ack resolves, A sees presence_update.
  await chB.updatePresence({ status: 'typing' });
  await waitFor(() => evA.seen.updates.some((m) => m.clientId === bClientId), 'presence_update at A');
  out('presence_update', {
    member: evA.seen.updates.find((m) => m.clientId === bClientId),
    membersAtA: chA.getMembers(),
  });

  // 6. A publishes with ack; B receives the message and tracks its eventId.
  await chA.publish({ text: 'hello', n: 0 });
  out('publish_ack', { resolved: true });
  await waitFor(() => evB.seen.messages.some((m) => m?.text === 'hello'), 'message at B');
  out('message_received', {
    data: evB.seen.messages.find((m) => m?.text === 'hello'),
    frame: framesIn('B', 'message').find((m) => m.data?.text === 'hello'),
    lastEventIdAtB: chB.lastEventId,
  });

  // 7. Heartbeat: the article's interval (shortened here) sends ping; the gateway pongs.
  await waitFor(() => {
    const pings = framesOut('A', 'ping').map((p) => p.t);
    return framesIn('A', 'pong').some((p) => pings.includes(p.t));
  }, 'pong echoing a ping t');
  out('pong', { pings: framesOut('A', 'ping').length, pong: framesIn('A', 'pong')[0], state: a.connection.getState() });

  // 8. A message from B that A sees, so A's channel holds a lastEventId.
  await chB.publish({ text: 'before-cut' });
  await waitFor(() => evA.seen.messages.some((m) => m?.text === 'before-cut'), 'before-cut at A');
  const lastEventIdBeforeCut = chA.lastEventId;
  out('last_event_id', { value: lastEventIdBeforeCut });

  // 9. Cut A's socket. While A is away, B publishes three messages.
  const socketsBefore = traceOf('A').sockets;
  let unsubscribed = null;
  proxy.cut();
  await waitFor(() => a.connection.getState() === 'reconnecting', 'A reconnecting');
  // The article has no automatic resubscribe: the app resubscribes the same Channel
  // (which keeps its lastEventId). unsubscribe() is queued while disconnected.
  unsubscribed = chA.unsubscribe();
  const aClientId = framesIn('A', 'connected')[0].clientId;
  await waitFor(() => evB.seen.leaves.some((m) => m.clientId === aClientId), 'presence_leave of A at B');
  out('presence_leave', {
    member: evB.seen.leaves.find((m) => m.clientId === aClientId),
    closeAtA: traceOf('A').closes.at(-1),
  });
  for (const n of [1, 2, 3]) {
    await chB.publish({ text: `gap-${n}` });
  }
  out('gap_published', { count: 3 });
  const seenBeforeResume = evA.seen.messages.length;
  proxy.release();
  await waitFor(() => traceOf('A').sockets > socketsBefore && a.connection.getState() === 'connected',
    'A reconnected');
  await unsubscribed;
  await chA.subscribe();
  const resub = framesOut('A', 'subscribe').at(-1);
  await waitFor(() => framesIn('A', 'history').length > 0 &&
    evA.seen.messages.slice(seenBeforeResume).some((m) => (m?.data ?? m)?.text === 'gap-3'), 'history at A');
  out('resubscribed', {
    sent: resub,
    lastEventIdBeforeCut,
    state: chA.getState(),
    states: a.log.states,
    historyFrames: framesIn('A', 'history'),
    deliveredAfterResume: evA.seen.messages.slice(seenBeforeResume),
    errorsAtA: a.log.errors,
    errorFrames: framesIn('A', 'error'),
  });

  await waitFor(() => evF.seen.errors.length > 0, 'forbidden subscribe to settle', 15000);
  const fSent = framesOut('B', 'subscribe').find((m) => m.channel === 'secret:forbidden');
  out('forbidden_subscribe', {
    sent: fSent,
    replies: traceOf('B').frames.filter((f) => f.dir === 'in' && f.msg.id === fSent._id).map((f) => f.msg),
    errors: evF.seen.errors,
    state: chF.getState(),
  });

  // 10. The test now stops the gateway(s): both clients must see 1001 and stay down.
  out('ready_for_shutdown');
  await waitFor(() => a.connection.getState() === 'disconnected' && b.connection.getState() === 'disconnected',
    'both clients disconnected by gateway shutdown', 20000);
  const authCalls = { A: a.log.authCalls, B: b.log.authCalls };
  await sleep(500); // room for a (wrong) reconnect attempt to show up
  out('shutdown', {
    closes: { A: traceOf('A').closes.at(-1), B: traceOf('B').closes.at(-1) },
    states: { A: a.connection.getState(), B: b.connection.getState() },
    authCallsAtClose: authCalls,
    authCallsLater: { A: a.log.authCalls, B: b.log.authCalls },
  });
  proxy.close();
}

// The short scenario across two gateways sharing one broker: A on RTW_URL, B on
// RTW_URL_B. Everything either client sees from the other crossed the broker.
async function crossScenario() {
  const env = process.env;
  const channel = env.RTW_CHANNEL || 'room:conformance';
  const channel2 = env.RTW_CHANNEL_2 || `${channel}-2`;
  const urls = { A: env.RTW_URL, B: env.RTW_URL_B || env.RTW_URL };

  // 1. A connects to gateway 1, B to gateway 2.
  const a = makeClient('A', urls.A, env.RTW_TOKEN_A);
  const b = makeClient('B', urls.B, env.RTW_TOKEN_B);
  await Promise.all([a.connection.connect(), b.connection.connect()]);
  await waitFor(() => framesIn('A', 'connected').length > 0 && framesIn('B', 'connected').length > 0,
    'connected frames');
  const aId = framesIn('A', 'connected')[0].clientId;
  const bId = framesIn('B', 'connected')[0].clientId;
  out('connected', {
    urls,
    states: { A: a.connection.getState(), B: b.connection.getState() },
    frames: { A: framesIn('A', 'connected')[0], B: framesIn('B', 'connected')[0] },
  });

  // 2. Both subscribe with presence, in opposite orders on two channels, so each
  // client sees the other's live presence_join once (and the other in presence_sync).
  const subscribe = async (client, name, ev) => {
    const ch = client.manager.subscribe(name, ev.events, { presence: true });
    await waitFor(() => ch.getState() !== 'subscribing', `${client.label} subscribe ${name} ack`);
    return ch;
  };
  const evA = channelEvents();
  const evB = channelEvents();
  const evA2 = channelEvents();
  const evB2 = channelEvents();
  const chA = await subscribe(a, channel, evA);
  const chB = await subscribe(b, channel, evB);
  const chB2 = await subscribe(b, channel2, evB2);
  const chA2 = await subscribe(a, channel2, evA2);
  const subFrames = (label, name) => {
    const sent = framesOut(label, 'subscribe').find((m) => m.channel === name);
    return { sent, replies: framesIn(label, 'ack').concat(framesIn(label, 'error')).filter((m) => m.id === sent._id) };
  };
  out('subscribed', {
    states: { A: chA.getState(), B: chB.getState(), A2: chA2.getState(), B2: chB2.getState() },
    A: subFrames('A', channel),
    B: subFrames('B', channel),
    errors: [evA, evB, evA2, evB2].flatMap((ev) => ev.seen.errors),
  });
  await waitFor(() => evA.seen.joins.some((m) => m.clientId === bId), 'presence_join of B at A');
  await waitFor(() => evB2.seen.joins.some((m) => m.clientId === aId), 'presence_join of A at B');
  const syncOf = (label, name) => framesIn(label, 'presence_sync').filter((m) => m.channel === name);
  out('presence_join', {
    clientIds: { A: aId, B: bId },
    bJoinAtA: evA.seen.joins.find((m) => m.clientId === bId),
    aJoinAtB: evB2.seen.joins.find((m) => m.clientId === aId),
    syncAtB: syncOf('B', channel),
    syncAtA: syncOf('A', channel2),
    membersAtA: chA.getMembers(),
    membersAtB: chB.getMembers(),
  });

  // 3. Each updates its presence (acked); the other sees the presence_update.
  await chA.updatePresence({ status: 'reading' });
  await chB.updatePresence({ status: 'typing' });
  await waitFor(() => evB.seen.updates.some((m) => m.clientId === aId), 'presence_update of A at B');
  await waitFor(() => evA.seen.updates.some((m) => m.clientId === bId), 'presence_update of B at A');
  out('presence_update', {
    aUpdateAtB: evB.seen.updates.find((m) => m.clientId === aId),
    bUpdateAtA: evA.seen.updates.find((m) => m.clientId === bId),
    membersAtA: chA.getMembers(),
    membersAtB: chB.getMembers(),
  });

  // 4. A publishes with ack; B receives it with its eventId.
  const publishAck = (label, text) => {
    const sent = framesOut(label, 'publish').find((m) => m.data?.text === text);
    return framesIn(label, 'ack').find((m) => m.id === sent._id);
  };
  await chA.publish({ text: 'from-A', n: 1 });
  await waitFor(() => evB.seen.messages.some((m) => m?.text === 'from-A'), 'from-A at B');
  out('a_to_b', {
    ack: publishAck('A', 'from-A'),
    data: evB.seen.messages.find((m) => m?.text === 'from-A'),
    frame: framesIn('B', 'message').find((m) => m.data?.text === 'from-A'),
    lastEventIdAtB: chB.lastEventId,
  });

  // 5. B publishes with ack; A receives it.
  await chB.publish({ text: 'from-B', n: 2 });
  await waitFor(() => evA.seen.messages.some((m) => m?.text === 'from-B'), 'from-B at A');
  out('b_to_a', {
    ack: publishAck('B', 'from-B'),
    data: evA.seen.messages.find((m) => m?.text === 'from-B'),
    frame: framesIn('A', 'message').find((m) => m.data?.text === 'from-B'),
    lastEventIdAtA: chA.lastEventId,
    messagesAtA: evA.seen.messages,
    messagesAtB: evB.seen.messages,
  });

  // 6. A disconnects cleanly (1000, no reconnect); B, on the other gateway, sees A leave.
  a.connection.disconnect();
  await waitFor(() => evB.seen.leaves.some((m) => m.clientId === aId), 'presence_leave of A at B');
  out('presence_leave', {
    aLeaveAtB: evB.seen.leaves.find((m) => m.clientId === aId),
    membersAtB: chB.getMembers(),
    stateA: a.connection.getState(),
    errors: { A: a.log.errors, B: b.log.errors },
    errorFrames: { A: framesIn('A', 'error'), B: framesIn('B', 'error') },
  });
  b.connection.disconnect();
}

const watchdog = setTimeout(() => {
  out('fail', { reason: 'watchdog: scenario took over 60 s', trace });
  process.exit(3);
}, 60000);

const scenarios = { full: scenario, cross: crossScenario };
const run = scenarios[process.env.RTW_SCENARIO || 'full'];
if (!run) {
  out('fail', { reason: `unknown RTW_SCENARIO ${JSON.stringify(process.env.RTW_SCENARIO)}; use full or cross` });
  process.exit(2);
}

run().then(
  () => {
    clearTimeout(watchdog);
    out('done');
    process.exit(0);
  },
  (err) => {
    out('fail', { reason: String(err?.stack ?? err), trace });
    process.exit(1);
  }
);
