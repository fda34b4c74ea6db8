// An upstream identity provider for the social-login tests (issue 12): Node's certified
// oidc-provider, unmodified, on 127.0.0.1. Started by e2e/src/upstream.rs (Upstream::start_node):
//   node_modules/.bin/node upstream.mjs PORT CONFIG_JSON      (PORT 0: any free port)
// CONFIG_JSON:
//   { "client": { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."] },
//     "alg": "ES256" | "RS256",
//     "accounts": [{ "sub": "...", "email": "...", "email_verified": true, "name": "..." }],
//     "tls": { "cert_file": "chain.pem", "key_file": "key.pem" } }     (optional)
// Prints one JSON line once it listens on 127.0.0.1: {"issuer": "http://127.0.0.1:PORT", ...},
// or with `tls` {"issuer": "https://localhost:PORT", ...} (the certificate names localhost).
//
// One confidential client (client_secret_basic or _post, code flow, PKCE S256 required), the
// scopes openid email profile, a fresh signing key of `alg`, the email claims in the ID token
// too (conformIdTokenClaims off, as Google and others do) and in UserInfo.
//
// Login without a browser: the authorization endpoint sends the user agent to
// /interaction/UID; GET /interaction/UID?login=SUB signs that account in and grants the
// requested scopes in one step (no consent page) and redirects back to /auth/UID, which
// redirects to the client with the code. Without `login` the page lists the accounts as links.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { createRequire } from 'node:module';
import Provider from 'oidc-provider';

const usage = 'usage: node upstream.mjs PORT CONFIG_JSON';
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 0 || !process.argv[3]) {
  console.error(usage);
  process.exit(2);
}
const config = JSON.parse(process.argv[3]);
const alg = config.alg ?? 'ES256';
if (!['ES256', 'RS256'].includes(alg)) throw new Error(`alg ${alg}: ES256 or RS256`);
const accounts = new Map((config.accounts ?? []).map((account) => [account.sub, account]));
if (accounts.size === 0) throw new Error('no accounts');

function signingKey() {
  const { privateKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `upstream-${alg}`, alg, use: 'sig' };
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Bind first: the issuer names the port, and with PORT 0 only the bound socket knows it.
const server = config.tls
  ? createTlsServer({ cert: readFileSync(config.tls.cert_file), key: readFileSync(config.tls.key_file) })
  : createServer();
server.listen(port, '127.0.0.1', () => {
  const { port: bound } = server.address();
  const issuer = config.tls ? `https://localhost:${bound}` : `http://127.0.0.1:${bound}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: config.client.client_id,
      client_secret: config.client.client_secret,
      redirect_uris: config.client.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: config.client.token_endpoint_auth_method ?? 'client_secret_basic',
      id_token_signed_response_alg: alg,
    }],
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'email', 'profile'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: account.email,
            email_verified: account.email_verified,
            name: account.name,
          };
        },
      };
    },
  });
  const oidc = provider.callback();

  // GET /interaction/UID?login=SUB: login and consent in one step.
  async function interaction(req, res, url) {
    const details = await provider.interactionDetails(req, res);
    const sub = url.searchParams.get('login');
    if (sub === null) {
      const links = [...accounts.values()].map((a) => `<li><a href="?login=${encodeURIComponent(a.sub)}">${escape(a.email)}</a></li>`);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><title>Upstream sign-in</title><h1>Sign in as</h1><ul>${links.join('')}</ul>`);
      return;
    }
    if (!accounts.has(sub)) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`no account ${sub}`);
      return;
    }
    const grant = new provider.Grant({ accountId: sub, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: sub },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  }

  server.on('request', (req, res) => {
    const url = new URL(req.url, issuer);
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(url.pathname)) {
      interaction(req, res, url).catch((error) => {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(`interaction failed: ${error.message}`);
      });
    } else {
      oidc(req, res);
    }
  });
  const { version } = createRequire(import.meta.url)('oidc-provider/package.json');
  console.log(JSON.stringify({ issuer, oidc_provider: version, node: process.version, alg }));
});
