import type { z } from 'zod';

/**
 * What a zod issue says, in the words a person fixing a file needs: a missing field is "missing"
 * rather than zod's "Invalid input: expected string, received undefined".
 */
export function issueText(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  const missing = /^Invalid input: expected (\w+), received undefined$/.exec(issue.message);
  if (missing) return `missing (expected ${missing[1]})`;
  return issue.message;
}
