import { loadControlApi } from '../../../buildd/api/load-proto';
import { clientMessageSchema } from '../../../buildd/api/messages';
import type { WalkEntry } from '../../../buildctl/context-walk';
import { encodeListing, listingMessage } from '../../../buildctl/listing-encoder';

/**
 * encodeListing drives protobufjs' Writer by hand: its bytes must be those proto-loader's own
 * serializer makes of the same message, and decode to the entries they came from.
 */
const api = loadControlApi();
const method = api.service['Build'];
if (!method) throw new Error('no Build method');

const entry = (over: Partial<WalkEntry>): WalkEntry => ({ rel: 'f', abs: '/ctx/f', type: 'FILE', mode: 0o644, mtimeMs: 1_700_000_000_123, size: 3, linkTarget: '', xattrs: new Map(), ...over });

const entries: WalkEntry[] = [
  entry({ rel: 'dir', type: 'DIR', mode: 0o755, size: 0 }),
  entry({ rel: 'dir/é 😀 file', mode: 0o4755, size: 2 ** 35 + 7 }),
  entry({ rel: 'dir/link', type: 'SYMLINK', mode: 0o777, size: 0, linkTarget: '../../outside/ü' }),
  entry({ rel: 'dir/caps', xattrs: new Map([['security.capability', Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0])], ['user.empty', Buffer.alloc(0)], ['user.x', Buffer.from('v')]]) }),
  entry({ rel: 'dir/empty', size: 0, mtimeMs: 0, mode: 0 }),
  entry({ rel: 'dir/sub', type: 'DIR', mode: 0o1777, size: 0, xattrs: new Map([['user.team', Buffer.from('build')]]) }),
];

test('writes the bytes proto-loader writes for the same message', () => {
  expect(Buffer.from(encodeListing('context', entries))).toEqual(method.requestSerialize(listingMessage('context', entries)));
  expect(Buffer.from(encodeListing('other', entries.slice(0, 1)))).toEqual(method.requestSerialize(listingMessage('other', entries.slice(0, 1))));
});

test('decodes, as the daemon checks it, to the entries it lists', () => {
  const decoded = clientMessageSchema.parse(method.requestDeserialize(Buffer.from(encodeListing('context', entries))));
  if (decoded.msg !== 'listing') throw new Error(`decoded as ${decoded.msg}`);
  expect(decoded.listing.local).toBe('context');
  expect(decoded.listing.entries).toEqual(
    entries.map((e) => ({
      local: 'context',
      path: e.rel,
      type: e.type,
      mode: e.mode,
      uid: 0,
      gid: 0,
      mtime_ms: e.mtimeMs,
      link_target: e.linkTarget,
      size: e.size,
      xattrs: Object.fromEntries(e.xattrs),
    })),
  );
});
