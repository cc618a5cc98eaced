// Package pond is the Slack-like target app that koi swim in: a workspace of
// users and channels generated deterministically from a Config, a Slack-style
// web API (POST /api/{method}), persistent websockets with fan-out of events
// to every connected member of a channel, per-token rate limits, bounded
// per-connection send queues (slow consumers are disconnected and counted),
// optional injected latency and errors, and observability (/stats, /metrics,
// /healthz, and /stats/transitions: per-token call order, see Transitions).
//
// # Identities
//
// User i (0-based) has the id UserID(i) = "U" followed by i in at least six
// decimal digits ("U000000", "U000042", "U1234567"), and by default the token
// Token(i) = "xoxp-pond-<i>", so koi i authenticates as user i without a
// lookup file. Config.TokenSecret switches to HMACToken(secret, i) and
// Config.Tokens to an explicit list (line i = user i).
//
// Channel j has the id ChannelID(j) = "C" followed by j in six digits.
// Channel 0 is #general (is_general, every user a member), channel 1 is
// #announcements (every user a member too); the others have power-law sizes
// (the k-th of them about Users/2/(k+1) members, at least 2), every tenth of
// them (j%10 == 9) is private and every hundredth (j%100 == 99) archived.
//
// # Web API
//
// Requests are POST (or GET) /api/{method} with form, query or JSON object
// arguments and "Authorization: Bearer TOKEN" (a "token" argument works too).
// Replies are {"ok":true,…} or {"ok":false,"error":"…"}; logical errors are
// HTTP 200 as in Slack, with these exceptions: unknown_method 404,
// request_too_large 413, ratelimited 429 (with Retry-After in seconds),
// internal_error 500 (injected faults), method_not_allowed 405.
//
// Methods: auth.test, rtm.connect, users.list, users.info, users.setPresence,
// users.conversations, conversations.list, conversations.info,
// conversations.members, conversations.history, conversations.mark,
// conversations.join, chat.postMessage, reactions.add, reactions.remove.
// conversations.history returns newest first with has_more and
// response_metadata.next_cursor; list methods page with limit and cursor.
//
// rtm.connect replies {"ok":true,"url":"ws://HOST/ws?ticket=…","self":{…},
// "team":{…}}; the websocket endpoint also accepts a bearer token on the
// upgrade request instead of a ticket.
//
// # Websocket
//
// The server sends {"type":"hello"} first, then events: message,
// reaction_added, reaction_removed, channel_marked, user_typing,
// presence_change. Every server frame carries "sent_at", the server's send
// time in unix milliseconds as a JSON number with a fractional part. Clients
// may send {"type":"ping","id":N} (answered by {"type":"pong","reply_to":N})
// and {"type":"typing","channel":C} (user_typing to the channel's other
// connected members).
//
// # Lock order
//
// channel.mu → channel.fanMu → hub.mu → wsConn.mu. A post builds its event
// under channel.mu, takes channel.fanMu before releasing channel.mu and fans
// out under fanMu alone, so events of one channel leave in ts order while
// readers of the channel are not blocked by the fan-out. Nothing takes
// channel.mu while holding hub.mu (hub.register reads memberships before
// taking it). The rate limiter, stats and marks locks are leaves.
package pond
