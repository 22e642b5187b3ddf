import { describe, expect, it } from "vitest";
import { costsOfDump } from "./callgrind-costs.js";

// A dump in callgrind's format, names compressed as callgrind writes them: `(id) name` once, then `(id)`.
const dump = `version: 1
creator: callgrind-3.19.0
events: Ir
summary: 1000
ob=(1) /usr/bin/node
fl=(1) ???
fn=(1) Builtins_LoadIC
0 100
+3 50
cfn=(2) v8::internal::Scavenger::ScavengeObject<v8::internal::FullHeapObjectSlot>(v8::internal::FullHeapObjectSlot)
calls=2 0
0 300
fn=(2)
0 300
fn=(3) v8::internal::compiler::GraphReducer::ReduceTop()
* 200
fn=(4) void v8::internal::BodyDescriptorBase::IteratePointers<v8::internal::ConcurrentMarkingVisitor>(int)
-2 40
fn=(5) v8::internal::HeapObject::SizeFromMap(v8::internal::Tagged<v8::internal::Map>) const
0 10
fn=(6) v8::internal::Heap::PerformGarbageCollection(v8::internal::GarbageCollector, v8::internal::GarbageCollectionReason, char const*)
cfn=(7) v8::internal::MarkCompactCollector::CollectGarbage()
calls=1 0
0 0
cfn=(2)
calls=3 0
0 0
fn=(3)
cfn=(7)
calls=1 0
0 0
totals: 700
`;

describe("costsOfDump", () => {
  // The scavenger's 300 are counted under fn=(2), named only where it was first a callee (cfn=).
  it("sums each function's own instructions once, the calls' inclusive costs left out, and tells the collector's and the compilers' apart", () => {
    expect(costsOfDump(dump)).toMatchObject({ total: 700, gc: 340, compiler: 200 });
  });

  it("counts the calls of a full collection from every caller, named or compressed, and no other collection's", () => {
    expect(costsOfDump(dump).markCompacts).toBe(2);
  });
});
