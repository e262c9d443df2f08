/**
 * The value with every object's keys in sorted order, for JSON that says the same thing the same
 * way: request bodies or configs written with their fields in another order hash alike.
 */
export function withSortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withSortedKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, withSortedKeys((value as Record<string, unknown>)[key])]));
}
