import type { CommandModule } from 'yargs';
import { DorascopeError } from '../../errors.js';

// Placeholder until its issue lands: fails loudly, never pretends to work.
export const demoCommand: CommandModule = {
  command: 'demo',
  describe: '(not implemented yet)',
  handler: () => {
    throw new DorascopeError('E_INTERNAL', '`demo` is not implemented yet');
  },
};
