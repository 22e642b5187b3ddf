/** A problem the user has to fix; its message is one line saying what to do. */
export class InfraError extends Error {
  override name = "InfraError";
}
