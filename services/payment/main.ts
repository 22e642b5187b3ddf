import { runService } from "../platform/host.js";

await runService("payment", () => import("./service.js"));
