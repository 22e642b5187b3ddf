import { create } from "@bufbuild/protobuf";
import { type Money, MoneySchema } from "../../gen/orderflow/common/v1/money_pb.js";

export function money(amountMinor: bigint | number | string, currency: string): Money {
  return create(MoneySchema, { amountMinor: BigInt(amountMinor), currency });
}

/** Formats integer minor units for people: `12345n, "USD"` -> `$123.45`; unknown currencies as `123.45 XYZ`. */
export function formatMoney(amountMinor: bigint, currency: string): string {
  let formatter: Intl.NumberFormat;
  try {
    formatter = new Intl.NumberFormat("en-US", { style: "currency", currency });
  } catch {
    return `${decimal(amountMinor, 2)} ${currency}`;
  }
  const digits = formatter.resolvedOptions().maximumFractionDigits ?? 2;
  // A decimal string, not a float: exact for any int64.
  return formatter.format(decimal(amountMinor, digits) as `${number}`);
}

function decimal(amountMinor: bigint, digits: number): string {
  const negative = amountMinor < 0n;
  const abs = (negative ? -amountMinor : amountMinor).toString().padStart(digits + 1, "0");
  const whole = abs.slice(0, abs.length - digits);
  const fraction = abs.slice(abs.length - digits);
  return `${negative ? "-" : ""}${whole}${digits > 0 ? `.${fraction}` : ""}`;
}
