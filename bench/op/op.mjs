// The comparison OpenID Provider of `make bench` (scripts/bench-oidc.sh): Node's certified
// oidc-provider with one confidential client `bench` (client_credentials, scope `api` on one
// resource server), introspection on, its in-memory adapter, no logging.
//   BENCH_SECRET=... NODE_ENV=production node_modules/.bin/node op.mjs PORT opaque|jwt
// `opaque` is the default format and the only one it can introspect; `jwt` signs ES256, like
// Portcullis. Resource-server scopes come from getResourceServerInfo, not `scopes`.
import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';
import Provider from 'oidc-provider';

const [port, format = 'opaque'] = [Number(process.argv[2]), process.argv[3]];
if (!Number.isInteger(port) || !['opaque', 'jwt'].includes(format) || !process.env.BENCH_SECRET) {
  console.error('usage: BENCH_SECRET=... node op.mjs PORT opaque|jwt');
  process.exit(2);
}
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', alg: 'ES256', use: 'sig' };
const provider = new Provider(`http://localhost:${port}`, {
  clients: [{
    client_id: 'bench',
    client_secret: process.env.BENCH_SECRET,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256', // the only key is ES256 (the default is RS256)
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: ['bench-only-cookie-key-0123456789abcdef'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:portcullis:bench',
      getResourceServerInfo: () => ({
        scope: 'api',
        accessTokenTTL: 600,
        accessTokenFormat: format,
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
const { version } = createRequire(import.meta.url)('oidc-provider/package.json');
provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${port} oidc-provider ${version} node ${process.version} format ${format}`);
});
