/** Classification of Postgres / pg-driver errors: what to retry, and what to answer UNAVAILABLE. */

/** The SQLSTATE (or Node socket code) an error carries, "" when it has none. */
export function errorCode(err: unknown): string {
  if (err && typeof err === "object" && "code" in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === "string") return code;
  }
  return "";
}

const CONNECTION_MESSAGES = /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|the database system is (starting up|shutting down)|terminating connection/i;

/** Socket and name-resolution errors of Node itself, by their `code`. */
const SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * The database is unreachable or going away (class 08, admin shutdown, too many
 * connections, driver socket errors): nothing wrong with the message — wait and retry it
 * without spending one of its deliveries. Looks inside an AggregateError (a host name with
 * several addresses fails with one per address, and an empty message) and an error's cause.
 */
export function isConnectionError(err: unknown): boolean {
  const code = errorCode(err);
  if (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "53300" || SOCKET_CODES.has(code)) return true;
  if (err instanceof AggregateError && err.errors.some(isConnectionError)) return true;
  if (err instanceof Error && err.cause !== undefined && err.cause !== err && isConnectionError(err.cause)) return true;
  return err instanceof Error && CONNECTION_MESSAGES.test(err.message);
}

/** A transaction lost a race (serialization failure, deadlock): run it again. */
export function isConflictError(err: unknown): boolean {
  const code = errorCode(err);
  return code === "40001" || code === "40P01";
}
