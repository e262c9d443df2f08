import { closestName } from '../config/closest-name.ts';
import { SENT_BODY_FIELDS } from './openai-batch-line.ts';

/** The CSV columns read as a row's own fields; any other column is metadata. */
export const ROW_FIELD_COLUMNS = ['id', 'model', 'system', 'temperature', 'max_tokens'] as const;

/** Row fields long enough that a typo of them is told apart from another word ("mode" may be meant). */
const TYPO_CHECKED: readonly string[] = ['system', 'temperature', 'max_tokens'];

/** A column that looks meant as a row field but, not named exactly so, is metadata. */
export interface LookalikeColumn {
  column: string;
  field: string;
}

/**
 * Header columns that are another spelling of a row field (`ID`, `Max Tokens`, `maxTokens`,
 * `Temprature`): they silently become metadata, so the run says so. A column is left alone when
 * the header has the field's own column too, or when it is the prompt column.
 */
export function lookalikeColumns(names: readonly string[], promptColumn: string): LookalikeColumn[] {
  const found: LookalikeColumn[] = [];
  for (const column of names) {
    if (column === promptColumn || (ROW_FIELD_COLUMNS as readonly string[]).includes(column)) continue;
    const normalized = column.trim().replace(/[\s-]+/g, '_').toLowerCase();
    const field = ROW_FIELD_COLUMNS.find((name) => name === normalized) ?? closestName(normalized, TYPO_CHECKED);
    if (field !== null && !names.includes(field)) found.push({ column, field });
  }
  return found;
}

/**
 * Header columns named as a request field a JSONL line sends with its call (`response_format`,
 * `seed`, `top_p`, `stop`...): a CSV row sends none of them, so such a column is metadata, which a
 * structured-output run would not notice until its answers came back as prose. `user` is left out:
 * in a spreadsheet it is far more often who asked.
 */
export function requestFieldColumns(names: readonly string[]): string[] {
  return names.filter((column) => {
    const name = column.trim().toLowerCase();
    return name !== 'user' && SENT_BODY_FIELDS.has(name);
  });
}
