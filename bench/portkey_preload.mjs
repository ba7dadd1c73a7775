// Preloaded into Portkey's gateway (node --import) for the benchmark; two fixes, no behaviour added.
//
// 1. Loopback only. start-server.js listens on every interface (@hono/node-server's serve() without
//    a hostname) and has no option to change it: a listen() without an explicit host binds
//    127.0.0.1 instead.
// 2. Mutable upstream headers. @hono/node-server replaces the global Response with a lighter class
//    that, built as `new Response(body, upstreamResponse)`, keeps the upstream response's Headers
//    object, which fetch() makes immutable; Portkey then appends its x-portkey-* headers to it and
//    answers 500 ("TypeError: immutable", Portkey-AI/gateway issues 1389 and 1550) for every
//    stream and every embeddings request. fetch() here returns the same response re-wrapped with
//    mutable headers (one Response object more per upstream call), which is what those issues'
//    proposed fixes amount to.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    if (typeof args[1] !== "string") {
      if (args[1] === undefined || args[1] === null) args[1] = "127.0.0.1";
      else args.splice(1, 0, "127.0.0.1");
    }
  } else if (first && typeof first === "object" && first.path === undefined && !first.host) {
    args[0] = { ...first, host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};

const UpstreamResponse = globalThis.Response;
const upstreamFetch = globalThis.fetch;
globalThis.fetch = async function (...args) {
  const response = await upstreamFetch(...args);
  return new UpstreamResponse(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};
