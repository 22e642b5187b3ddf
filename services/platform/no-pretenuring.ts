import { setFlagsFromString } from "node:v8";

/**
 * Turns off V8's allocation-site pretenuring; imported first by host.ts, before
 * anything allocates much. Pretenuring allocates an object literal straight into the
 * old generation once most objects from its site have survived a scavenge. A server
 * meets that at start-up, when everything survives, in sites that later run once per
 * call: each call then has objects in the old generation pointing at its young ones,
 * which the scavenger must keep, and promote, until a mark-compact. Those keep their
 * site's survival rate at 100 %, so the decision never reverts: a cached GetOrder's
 * process spent 30–35 ms in each scavenge with 7 MB of dead calls surviving it, against
 * 2.4–3.1 ms and 0.1 MB without (docs/performance-history.md, sixty-fourth pass).
 * The flag is read at each collection, so setting it at run time takes effect.
 */
setFlagsFromString("--no-allocation-site-pretenuring");
