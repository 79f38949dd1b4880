package org.ferroshop.workflow;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * The ferroshop workflow engine: Operaton's process engine, REST API and web apps, configured
 * entirely by application.yaml (and the environment variables it names). The Rust services
 * drive it over REST and work its external tasks; no Java code of ours runs inside the engine.
 */
@SpringBootApplication
public class EngineApplication {
    public static void main(String[] args) {
        SpringApplication.run(EngineApplication.class, args);
    }
}
