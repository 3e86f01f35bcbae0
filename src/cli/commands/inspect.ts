import type { CommandModule } from 'yargs';
import { DorascopeError } from '../../errors.js';

// Placeholder until its issue lands: fails loudly, never pretends to work.
export const inspectCommand: CommandModule = {
  command: 'inspect',
  describe: '(not implemented yet)',
  handler: () => {
    throw new DorascopeError('E_INTERNAL', '`inspect` is not implemented yet');
  },
};
