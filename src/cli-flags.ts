import { Option } from 'commander';

/*
 * commander types what it parses as a record of anything; @commander-js/extra-typings would infer
 * it from the flags, but is not a dependency. These few types tie a command's options to the type
 * its action takes instead: a flag renamed on one side only, or parsed to another type than its
 * field holds, is a compile error rather than a flag silently dropped.
 */

/** What commander names an option's field (Option.attributeName): `-o, --batch-id <id>` -> batchId, `--no-cache` -> cache. */
type FlagField<Flags extends string> = Flags extends `${string}--no-${infer Name}` ? CamelCase<FirstWord<Name>> : Flags extends `${string}--${infer Name}` ? CamelCase<FirstWord<Name>> : never;
type FirstWord<Text extends string> = Text extends `${infer Word} ${string}` ? Word : Text;
type CamelCase<Name extends string> = Name extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : Name;

type TakesValue<Flags extends string> = Flags extends `${string}<${string}>` ? true : false;
type FieldValue<Fields, Flags extends string> = FlagField<Flags> extends keyof Fields ? NonNullable<Fields[FlagField<Flags>]> : never;

/** Nothing (unknown) for flags that fit a field of `Fields`; else a type the flags' text is not, named for what is wrong. */
type FlagProblem<Fields, Flags extends string> =
  FlagField<Flags> extends keyof Fields
    ? TakesValue<Flags> extends true
      ? unknown
      : FieldValue<Fields, Flags> extends boolean
        ? unknown
        : { ' takes no value, but its field is not a boolean': FlagField<Flags> }
    : { ' names no field of the options type': FlagField<Flags> };

/**
 * Options for a command whose action takes `Fields`: `flags` must name one of its fields, and an
 * option that takes a value is given the parser that makes the field's type of it.
 */
export function optionsFor<Fields>() {
  return <const Flags extends string>(flags: Flags & FlagProblem<Fields, Flags>, description: string, ...parse: TakesValue<Flags> extends true ? [parse: (value: string) => FieldValue<Fields, Flags>] : []): Option => {
    const option = new Option(flags, description);
    return parse[0] ? option.argParser(parse[0]) : option;
  };
}
