import type { CommandModule } from 'yargs';
import { DorascopeError } from '../../errors.js';

// Placeholder until its issue lands: fails loudly, never pretends to work.
export const compareCommand: CommandModule = {
  command: 'compare',
  describe: '(not implemented yet)',
  handler: () => {
    throw new DorascopeError('E_INTERNAL', '`compare` is not implemented yet');
  },
};
