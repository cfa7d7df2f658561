import { Agent, Dispatcher } from 'undici';

/**
 * An undici Agent that records `METHOD path` of every request, to check what a client sent
 * (e.g. that a second push only HEADs). Lifecycle: `close` when the test is done.
 */
export interface CountingDispatcher {
  dispatcher: Dispatcher;
  requests: string[];
  count(method: string, pathPart?: string): number;
  close(): Promise<void>;
}

export function countingDispatcher(): CountingDispatcher {
  const agent = new Agent();
  const requests: string[] = [];
  const dispatcher = agent.compose((dispatch) => (opts, handler) => {
    requests.push(`${opts.method} ${opts.path}`);
    return dispatch(opts, handler);
  });
  return {
    dispatcher,
    requests,
    count: (method, pathPart = '') => requests.filter((r) => r.startsWith(method + ' ') && r.includes(pathPart)).length,
    close: () => agent.close(),
  };
}
