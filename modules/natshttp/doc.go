// Package natshttp carries HTTP over NATS between caddy-neo's edge and its
// stage gateways:
//
//   - `http.reverse_proxy.transport.neo_nats`: a reverse-proxy transport that
//     sends each request over NATS to a stage gateway, streaming bodies of
//     any size with flow control, with zone failover;
//   - the `neo_nats_gateway` app (global option `neo_nats_gateway`): the
//     responder side, which serves requests received over NATS through a
//     named server of the http app and registers as a NATS micro service.
//
// Both ends use the connections of modules/natsconn's `neo_nats` app. The
// subject scheme neo.rt.<stage>.<zone>.<tenant>.<app> is internal/route's;
// the gateway hands the subject's route to the tenant registry in the
// request context without importing the registry. See docs/nats-protocol.md
// for the message framing.
package natshttp
