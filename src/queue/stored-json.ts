/** JSON that Switchyard stored in Redis, read back: null for none, or for a damaged key that does not parse. */
export function storedJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
