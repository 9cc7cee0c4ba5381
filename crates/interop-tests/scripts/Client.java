import java.io.FileInputStream;
import java.net.URL;
import java.security.KeyStore;
import javax.net.ssl.*;

public class Client {
    public static void main(String[] args) throws Exception {
        char[] pw = args[3].toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(new FileInputStream(args[1]), pw);
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, pw);
        KeyStore ts = KeyStore.getInstance("PKCS12");
        ts.load(new FileInputStream(args[2]), pw);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
        c.setSSLSocketFactory(ctx.getSocketFactory());
        System.out.println("status " + c.getResponseCode());
    }
}
