// Verifies a waiting-room admission token with the JDK alone (Java 17+: Ed25519 is
// built in), the way a Java site would (docs/integration.md). With a JWT library such
// as nimbus-jose-jwt the same checks are a few lines; this file has no dependency so
// the e2e tests can run it here: java VerifyAdmission.java JWKS_URL AUDIENCE TOKEN
// Prints {"admitted": jti} and exits 0, or {"refused": reason} and exits 1.

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.util.Base64;
import java.util.HexFormat;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class VerifyAdmission {
    // An Ed25519 public key as X.509 SubjectPublicKeyInfo: this prefix, then the 32 bytes.
    private static final byte[] SPKI_PREFIX = HexFormat.of().parseHex("302a300506032b6570032100");
    private static final long CLOCK_TOLERANCE_SECONDS = 5;

    public static void main(String[] args) throws Exception {
        String jwksUrl = args[0], audience = args[1], token = args[2];
        String[] parts = token.split("\\.", -1);
        if (parts.length != 3) refuse("not a JWT");
        Base64.Decoder base64 = Base64.getUrlDecoder();
        String header, payload;
        byte[] signature;
        try {
            header = new String(base64.decode(parts[0]), StandardCharsets.UTF_8);
            payload = new String(base64.decode(parts[1]), StandardCharsets.UTF_8);
            signature = base64.decode(parts[2]);
        } catch (IllegalArgumentException error) {
            refuse("not a JWT");
            return;
        }
        // EdDSA only: the header's "alg" cannot choose a weaker check.
        if (!"EdDSA".equals(text(header, "alg"))) refuse("algorithm");
        PublicKey key = publicKey(jwksUrl, text(header, "kid"));
        Signature verifier = Signature.getInstance("Ed25519");
        verifier.initVerify(key);
        verifier.update((parts[0] + "." + parts[1]).getBytes(StandardCharsets.US_ASCII));
        if (!verifier.verify(signature)) refuse("signature");
        if (!audience.equals(text(payload, "aud"))) refuse("audience");
        String exp = number(payload, "exp");
        long now = System.currentTimeMillis() / 1000;
        if (exp == null || Long.parseLong(exp) + CLOCK_TOLERANCE_SECONDS <= now) refuse("expired");
        String jti = text(payload, "jti");
        if (jti == null) refuse("no jti");
        System.out.println("{\"admitted\": \"" + jti + "\"}");
    }

    /** The key the JWKS publishes under `kid` (fetched per call here; cache it in a site). */
    private static PublicKey publicKey(String jwksUrl, String kid) throws Exception {
        if (kid == null) refuse("no key id");
        HttpResponse<String> response = HttpClient.newHttpClient().send(
                HttpRequest.newBuilder(URI.create(jwksUrl)).build(),
                HttpResponse.BodyHandlers.ofString());
        Matcher jwk = Pattern.compile("\\{[^{}]*\\}").matcher(response.body());
        while (jwk.find()) {
            String entry = jwk.group();
            if (kid.equals(text(entry, "kid")) && "Ed25519".equals(text(entry, "crv"))) {
                byte[] raw = Base64.getUrlDecoder().decode(text(entry, "x"));
                byte[] spki = new byte[SPKI_PREFIX.length + raw.length];
                System.arraycopy(SPKI_PREFIX, 0, spki, 0, SPKI_PREFIX.length);
                System.arraycopy(raw, 0, spki, SPKI_PREFIX.length, raw.length);
                return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(spki));
            }
        }
        refuse("unknown key");
        return null;
    }

    /** A string member of a flat JSON object (enough for these tokens and the JWKS). */
    private static String text(String json, String name) {
        Matcher found = Pattern.compile("\"" + name + "\"\\s*:\\s*\"([^\"]*)\"").matcher(json);
        return found.find() ? found.group(1) : null;
    }

    private static String number(String json, String name) {
        Matcher found = Pattern.compile("\"" + name + "\"\\s*:\\s*(\\d+)").matcher(json);
        return found.find() ? found.group(1) : null;
    }

    private static void refuse(String reason) {
        System.out.println("{\"refused\": \"" + reason + "\"}");
        System.exit(1);
    }
}
