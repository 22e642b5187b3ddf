import { runService } from "../platform/host.js";

await runService("order", () => import("./service.js"));
