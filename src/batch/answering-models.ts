import { AUTO_ROUTE } from '../routing/pinned-model.ts';

/**
 * What the batch's rows go to before routing (a row's own model, its A/B arm, the pinned model,
 * or `auto` for the rows routed by task type), gathered as the file is read. A row's own `model`
 * is known only once the row is read: told before, the judge's note named routes no row took (QA:
 * examples/eval.csv, each row naming its model, heard that the judge "may answer rows here too").
 */
export class AnsweringModels {
  readonly #names = new Set<string>();

  /** A row going to `name`, its rowTarget's (undefined: routed by task type). */
  see(name: string | undefined): void {
    this.#names.add(name ?? AUTO_ROUTE);
  }

  /** The targets seen so far: once the file is read, all of them (none for a file without a valid row). */
  get names(): ReadonlySet<string> {
    return this.#names;
  }
}
