/**
 * How each PEFT method counts the parameters it trains on an adapted tensor, from adapter_config.json
 * alone (the report's "trainable params" column, report/trainable-params.ts): every method's plug-in
 * gives a `TrainableRule` (peft-types.ts), and the report's loop asks no method by name.
 */
export interface TrainableRule {
  /** PEFT's `target_modules` (a list of suffixes or one regex); null: not recorded, count unknown. */
  readonly targetModules: string | readonly string[] | null;
  readonly layersToTransform: readonly number[] | null;
  /**
   * Parameters trained on the tensor of module `path` (PEFT's module path) with `rows` output features
   * and `cols` inputs (in·k… for a conv kernel), or null when they cannot be told from these.
   */
  count(path: string, rows: number, cols: number): number | null;
}

/** A method's rule from its parsed adapter_config.json; `where` names the file in errors. */
export type TrainableCounter = (json: Readonly<Record<string, unknown>>, where: string) => TrainableRule;
