// A callgrind dump's instructions by what ran them: V8's garbage collector, V8's compilers, or
// the program (JavaScript, V8's builtins and runtime, Node, libuv, libc). Both of V8's own
// shares come and go with when a collection or a compilation happens to fall in a window;
// the program's share is what a change to our code moves.

export interface Costs {
  total: number;
  gc: number;
  compiler: number;
  /** V8's full collections (mark-compacts) begun in the window: whether one falls in it moves the collector's count most. */
  markCompacts: number;
}

export const noCosts: Costs = { total: 0, gc: 0, compiler: 0, markCompacts: 0 };

/** V8's collector: its heap spaces, marking, scavenging, sweeping, evacuation and their visitors; cppgc. */
const collector =
  /v8::internal::(Heap|Scavenger|ScavengerCollector|MarkCompactCollector|MinorMarkSweepCollector|ConcurrentMarking|IncrementalMarking|Sweeper|ArrayBufferSweeper|MarkingBarrier|MarkingWorklists?|FullEvacuator|Evacuator|RememberedSet|SlotSet|TypedSlotSet|GlobalHandles|TracedHandles|MemoryAllocator|PagedSpace|NewSpace|SemiSpace|LargeObjectSpace|MutablePageMetadata|MemoryChunk)\b|MarkingVisitor|ScavengeVisitor|IterateAndScavenge|Evacuate|PointersUpdating|cppgc::|heap::base::/;
/** V8's compilers: the parser, Ignition's bytecode generator, Sparkplug, Maglev, TurboFan and Turboshaft, their zones. */
const compilers =
  /v8::internal::(compiler|maglev|turboshaft|baseline|interpreter)::|v8::internal::(Compiler|OptimizingCompileDispatcher|OptimizedCompilationJob|Parser|PreParser|Scanner|Zone|AstValueFactory)\b/;

const markCompact = /v8::internal::MarkCompactCollector::CollectGarbage\(/;

/** Classifies every function's own (exclusive) instructions in a dump, and counts the mark-compacts in it. */
export function costsOfDump(text: string): Costs {
  const names = new Map<string, string>();
  const costs: Costs = { total: 0, gc: 0, compiler: 0, markCompacts: 0 };
  let kind: "gc" | "compiler" | undefined;
  let callee = "";
  // The cost line after `calls=` is the call's inclusive cost, already counted in the callee.
  let afterCall = false;
  const nameOf = (reference: string): string => {
    const match = /^\((\d+)\)(?: (.*))?$/.exec(reference);
    if (!match) return reference;
    const [, id = "", name] = match;
    if (name !== undefined) names.set(id, name);
    return names.get(id) ?? id;
  };
  for (const line of text.split("\n")) {
    if (line.startsWith("fn=")) {
      const name = nameOf(line.slice(3));
      kind = collector.test(name) ? "gc" : compilers.test(name) ? "compiler" : undefined;
    } else if (line.startsWith("cfn=")) {
      callee = nameOf(line.slice(4));
    } else if (line.startsWith("calls=")) {
      afterCall = true;
      if (markCompact.test(callee)) costs.markCompacts += Number(line.slice(6).split(" ")[0]);
    } else if (/^[\d+\-*]/.test(line)) {
      if (afterCall) {
        afterCall = false;
        continue;
      }
      const instructions = Number(line.slice(line.lastIndexOf(" ") + 1));
      costs.total += instructions;
      if (kind) costs[kind] += instructions;
    }
  }
  return costs;
}
