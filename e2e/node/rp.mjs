// A second relying-party library against the realm: openid-client (Node), unmodified, over
// TLS (the test CA comes in through NODE_EXTRA_CA_CERTS). Run by e2e/tests/node_rp.rs, which
// starts the realm and reads the JSON report this prints on stdout; any error exits 1.
//
// The flow: discovery, an authorization URL with PKCE (S256), state and nonce, the hosted
// login page filled in with fetch as a browser without JavaScript would (manual redirects,
// the CSRF token and cookie from the form), the code grant with the expected nonce and state
// (the library checks the ID token, at_hash-free code flow and the RFC 9207 iss), UserInfo,
// a refresh, introspection, revocation, and RP-initiated logout through the end-session URL.

import * as client from 'openid-client';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const issuer = env('ISSUER');
const clientId = env('CLIENT_ID');
const clientSecret = env('CLIENT_SECRET');
const redirectUri = env('REDIRECT_URI');
const postLogoutRedirectUri = env('POST_LOGOUT_REDIRECT_URI');
const email = env('EMAIL');
const password = env('PASSWORD');

/** `name=value` of the cookie `name` a response sets. */
function cookie(response, name) {
  const found = response.headers.getSetCookie().find((c) => c.startsWith(`${name}=`));
  if (!found) throw new Error(`no ${name} cookie from ${response.url}`);
  return found.split(';')[0];
}

/** The value of the hidden field `name` in a page. */
function field(html, name) {
  const match = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!match) throw new Error(`no ${name} field in the page`);
  return match[1];
}

/** GET without following redirects. */
function get(url, cookies = '') {
  return fetch(url, { redirect: 'manual', headers: cookies ? { cookie: cookies } : {} });
}

function expectStatus(response, status, step) {
  if (response.status !== status) {
    throw new Error(`${step}: ${response.status} instead of ${status} from ${response.url}`);
  }
}

const location = (response) => new URL(response.headers.get('location'), issuer);

/** Signs in through the hosted login page; returns (redirect to the client, session cookie). */
async function browse(authorizationUrl) {
  const toLogin = await get(authorizationUrl);
  expectStatus(toLogin, 303, 'authorize');
  const page = await get(location(toLogin));
  expectStatus(page, 200, 'login page');
  const csrfCookie = cookie(page, '__Host-portcullis_csrf');
  const html = await page.text();
  const posted = await fetch(new URL('/login', issuer), {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: csrfCookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      email,
      password,
      csrf: field(html, 'csrf'),
      req: field(html, 'req'),
    }),
  });
  expectStatus(posted, 303, 'login form');
  const session = cookie(posted, '__Host-portcullis_session');
  const back = await get(location(posted), session);
  expectStatus(back, 303, 'resume');
  return { callback: location(back), session };
}

const report = {};

const config = await client.discovery(
  new URL(issuer),
  clientId,
  undefined,
  client.ClientSecretBasic(clientSecret),
);
const metadata = config.serverMetadata();
report.discovery = {
  issuer: metadata.issuer,
  code_challenge_methods_supported: metadata.code_challenge_methods_supported,
  authorization_response_iss_parameter_supported:
    metadata.authorization_response_iss_parameter_supported,
};

const codeVerifier = client.randomPKCECodeVerifier();
const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
const nonce = client.randomNonce();
const state = client.randomState();
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email offline_access',
  code_challenge: codeChallenge,
  code_challenge_method: 'S256',
  state,
  nonce,
});
report.authorization_url = authorizationUrl.href;

const { callback, session } = await browse(authorizationUrl);
report.callback = { origin_and_path: `${callback.origin}${callback.pathname}`, has_code: callback.searchParams.has('code') };

const tokens = await client.authorizationCodeGrant(config, callback, {
  pkceCodeVerifier: codeVerifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
});
const claims = tokens.claims();
report.id_token = {
  iss: claims.iss,
  aud: claims.aud,
  sub: claims.sub,
  nonce: claims.nonce,
  has_auth_time: typeof claims.auth_time === 'number',
  has_sid: typeof claims.sid === 'string',
};
report.token_type = tokens.token_type;
report.scope = tokens.scope;
report.has_refresh_token = typeof tokens.refresh_token === 'string';

const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
report.userinfo = { sub: userinfo.sub, email: userinfo.email, email_verified: userinfo.email_verified };

const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
report.refresh = {
  rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== tokens.refresh_token,
  sub: refreshed.claims()?.sub,
  new_access_token: refreshed.access_token !== tokens.access_token,
};

const active = await client.tokenIntrospection(config, refreshed.access_token);
report.introspection = {
  active: active.active,
  sub: active.sub,
  client_id: active.client_id,
};

await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
const afterRevocation = await client.tokenIntrospection(config, refreshed.access_token);
let refreshAfterRevocation;
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
  refreshAfterRevocation = 'accepted';
} catch (error) {
  refreshAfterRevocation = error.error ?? error.code ?? String(error);
}
report.revocation = {
  access_token_active: afterRevocation.active,
  refresh: refreshAfterRevocation,
};

const logoutState = client.randomState();
const endSession = client.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: postLogoutRedirectUri,
  state: logoutState,
});
const loggedOut = await get(endSession, session);
const logoutTarget = loggedOut.headers.get('location');
report.logout = {
  status: loggedOut.status,
  to: logoutTarget && new URL(logoutTarget).origin + new URL(logoutTarget).pathname,
  state_echoed: logoutTarget !== null && new URL(logoutTarget).searchParams.get('state') === logoutState,
};

// The browser's session is over: prompt=none answers login_required to the client.
const silent = await get(
  client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid',
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
    prompt: 'none',
  }),
  session,
);
const silentTarget = silent.headers.get('location');
report.after_logout = {
  status: silent.status,
  error: silentTarget && new URL(silentTarget, issuer).searchParams.get('error'),
};

console.log(JSON.stringify(report));
