import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

/**
 * Readiness probe used by scripts/services (compiled once into the Kafka jar cache).
 *
 * <p>Usage: {@code java -cp TOOLS:LIB/* Ready BOOTSTRAP TIMEOUT_SECONDS [BROKER_PID]}
 *
 * <p>Succeeds (exit 0) once the broker answers a metadata request (list topics) <b>and</b> a
 * consumer group coordinator is available: the FindCoordinator request makes the broker create
 * {@code __consumer_offsets}, so the first consumer group of a test does not race its creation
 * (kafka-go reports GroupCoordinatorNotAvailable then). Exit 1 on timeout, 2 if BROKER_PID died.
 */
public final class Ready {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: Ready BOOTSTRAP TIMEOUT_SECONDS [BROKER_PID]");
            System.exit(64);
        }
        String bootstrap = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        long pid = args.length > 2 ? Long.parseLong(args[2]) : -1;

        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "bouncer-services-ready");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "200");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "100");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");

        String last = "no attempt made";
        try (Admin admin = Admin.create(p)) {
            while (System.nanoTime() < deadline) {
                if (pid > 0 && !ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
                    System.err.println("kafka process " + pid + " exited; last error: " + last);
                    System.exit(2);
                }
                try {
                    admin.listTopics().names().get(5, TimeUnit.SECONDS);
                    admin.listConsumerGroupOffsets("bouncer-services-ready")
                            .partitionsToOffsetAndMetadata().get(5, TimeUnit.SECONDS);
                    System.exit(0);
                } catch (Exception e) {
                    Throwable c = e.getCause() != null ? e.getCause() : e;
                    last = c.getClass().getSimpleName() + ": " + c.getMessage();
                    Thread.sleep(200);
                }
            }
        }
        System.err.println("kafka at " + bootstrap + " not ready: " + last);
        System.exit(1);
    }
}
