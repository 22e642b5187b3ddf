import { runService } from "../platform/host.js";

await runService("inventory", () => import("./service.js"));
