/**
 * A base_url as messages show it: a password in it (`https://user:secret@gateway/v1`, a proxy's
 * basic auth) as `***`. Call errors quote the URL, and they go to results, costs.jsonl, the report
 * and the terminal, which are shared far more widely than the config.
 */
export function urlWithoutPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/?#@:]*):[^/?#@]*@/i, '$1:***@');
}
