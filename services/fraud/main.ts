import { runService } from "../platform/host.js";

await runService("fraud", () => import("./service.js"));
