import { runService } from "../platform/host.js";

await runService("notification", () => import("./service.js"));
