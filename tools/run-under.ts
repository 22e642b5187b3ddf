/** A command to spawn: the program and its arguments. */
export interface Command {
  command: string;
  args: string[];
}

/** The command that runs `command args` under a program given with its arguments (`["valgrind", "--tool=callgrind"]`); none: the command itself. */
export function runUnder(prefix: readonly string[], command: string, args: readonly string[]): Command {
  const [runner, ...runnerArgs] = prefix;
  return runner === undefined ? { command, args: [...args] } : { command: runner, args: [...runnerArgs, command, ...args] };
}
