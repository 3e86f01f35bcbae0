import type { CommandModule } from 'yargs';
import { DorascopeError } from '../../errors.js';

// Placeholder until its issue lands: fails loudly, never pretends to work.
export const mergeCommand: CommandModule = {
  command: 'merge',
  describe: '(not implemented yet)',
  handler: () => {
    throw new DorascopeError('E_INTERNAL', '`merge` is not implemented yet');
  },
};
