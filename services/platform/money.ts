import { create } from "@bufbuild/protobuf";
import { type Money, MoneySchema } from "../../gen/orderflow/common/v1/money_pb.js";

export function money(amountMinor: bigint | number | string, currency: string): Money {
  return create(MoneySchema, { amountMinor: BigInt(amountMinor), currency });
}

interface CurrencyFormat {
  formatter: Intl.NumberFormat;
  digits: number;
}

/** By currency code; null for a code Intl does not accept. Building a formatter costs far more than using one. */
const formats = new Map<string, CurrencyFormat | null>();

function currencyFormat(currency: string): CurrencyFormat | null {
  let format = formats.get(currency);
  if (format !== undefined) return format;
  try {
    const formatter = new Intl.NumberFormat("en-US", { style: "currency", currency });
    format = { formatter, digits: formatter.resolvedOptions().maximumFractionDigits ?? 2 };
  } catch {
    format = null;
  }
  // Bounded: currency codes come from our own data, but a flood of odd ones must not grow it forever.
  if (formats.size < 1_000) formats.set(currency, format);
  return format;
}

/** Formats integer minor units for people: `12345n, "USD"` -> `$123.45`; unknown currencies as `123.45 XYZ`. */
export function formatMoney(amountMinor: bigint, currency: string): string {
  const format = currencyFormat(currency);
  if (!format) return `${decimal(amountMinor, 2)} ${currency}`;
  // A decimal string, not a float: exact for any int64.
  return format.formatter.format(decimal(amountMinor, format.digits) as `${number}`);
}

function decimal(amountMinor: bigint, digits: number): string {
  const negative = amountMinor < 0n;
  const abs = (negative ? -amountMinor : amountMinor).toString().padStart(digits + 1, "0");
  const whole = abs.slice(0, abs.length - digits);
  const fraction = abs.slice(abs.length - digits);
  return `${negative ? "-" : ""}${whole}${digits > 0 ? `.${fraction}` : ""}`;
}
