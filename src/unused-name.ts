/**
 * `name`, or `name.2`, `name.3`... the first not in `taken`, which it joins: how an unnamed or
 * clashing column gets a name of its own (the CSV reader's header, results.csv's metadata columns).
 */
export function unusedName(name: string, taken: Set<string>): string {
  let free = name;
  for (let n = 2; taken.has(free); n += 1) free = `${name}.${n}`;
  taken.add(free);
  return free;
}
