import { traceMetadata } from '../../../buildctl/run-build';

describe('traceMetadata', () => {
  it('passes a well-formed $TRACEPARENT (and $TRACESTATE with it) as gRPC metadata, and nothing else', () => {
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const md = traceMetadata({ TRACEPARENT: parent, TRACESTATE: 'congo=t61rcWkgMzE' });
    expect(md.get('traceparent')).toEqual([parent]);
    expect(md.get('tracestate')).toEqual(['congo=t61rcWkgMzE']);
    expect(traceMetadata({}).getMap()).toEqual({});
    expect(traceMetadata({ TRACEPARENT: 'garbage', TRACESTATE: 'x=1' }).getMap()).toEqual({});
    expect(traceMetadata({ TRACEPARENT: parent.toUpperCase() }).getMap()).toEqual({});
  });
});
