import type { CommandModule } from 'yargs';
import { DorascopeError } from '../../errors.js';

// Placeholder until its issue lands: fails loudly, never pretends to work.
export const reproduceCommand: CommandModule = {
  command: 'reproduce',
  describe: '(not implemented yet)',
  handler: () => {
    throw new DorascopeError('E_INTERNAL', '`reproduce` is not implemented yet');
  },
};
