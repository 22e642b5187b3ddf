// The flags every service's node process starts with: here for npm start, the
// tests and the bench (tools/system.ts), in the image's ENTRYPOINT and in the
// chart's `common.nodeFlags`, whose tests hold them to this list.
//
// V8 sizes its young generation from the memory the process may use: on a
// host with gigabytes free a semi-space grows to 64 MiB, but under a pod's
// memory limit (cgroup) it is far smaller — 1–3 MiB at the chart's 512 MiB,
// 16 MiB at 1 GiB. Given those sizes, the participants scavenged 20–60 times
// as often as with 64 MiB and spent twice as long in it per saga, the order
// service 4 times as often (docs/performance-history.md, sixty-eighth pass).
// Fixing the size makes a pod run the young generation that the bench's
// figures were measured with and the chart's memory limits were set from.
export const serviceNodeFlags: readonly string[] = ["--enable-source-maps", "--max-semi-space-size=64"];
