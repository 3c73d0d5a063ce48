// Verifies a waiting-room admission token the way a Node site would (docs/integration.md).
// Usage: node verify-admission.mjs JWKS_URL AUDIENCE TOKEN
// Prints {"admitted": jti, "sub": ...} and exits 0, or {"refused": reason} and exits 1.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, audience, token] = process.argv.slice(2);
// Cached, and refetched when a token names a key id it has not seen (key rotation).
const jwks = createRemoteJWKSet(new URL(jwksUrl));

try {
  const { payload } = await jwtVerify(token, jwks, {
    audience,
    algorithms: ["EdDSA"],
    requiredClaims: ["jti", "exp"],
    clockTolerance: 5,
  });
  console.log(JSON.stringify({ admitted: payload.jti, sub: payload.sub ?? null }));
} catch (error) {
  console.log(JSON.stringify({ refused: error.code ?? error.message }));
  process.exit(1);
}
